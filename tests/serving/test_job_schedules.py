"""Recurring batch jobs: the cron expression checked field by field, when a schedule is due (with
"now" passed in), the beat task submitting exactly one job per due run however often and however
concurrently it is called, a refused run audited without stopping the others, the API with every
refusal and who may do what, and the console's card. Real PostgreSQL (and Redis where chunks are
queued on commit)."""

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from console.audit import Actor
from console.errors import InvalidInput
from console.models import AuditEvent
from registry.models import ModelVersion
from serving.jobs import schedules
from serving.jobs import services as job_services
from serving.models import BatchJob, Deployment, JobSchedule, JobState
from serving.tasks import run_due_job_schedules
from tests.conftest import PASSWORD

API = "/api/v1/models/iris/schedules/"
HTMX = {"HX-Request": "true"}
T0 = datetime(2030, 1, 7, 2, 59, 30, tzinfo=UTC)  # a Monday, half a minute before 03:00 UTC


def csv_rows(n: int = 20) -> bytes:
    header = ",".join(f"x.{i}" for i in range(8))
    return (header + "\n" + "\n".join(",".join(str(r + c / 10) for c in range(8)) for r in range(n)) + "\n").encode()


def submit_template(model: Any, who: Any, **options: Any) -> BatchJob:
    """A job of the model through the ordinary submission (its chunks are queued only on commit)."""
    upload = SimpleUploadedFile("rows.csv", csv_rows())
    return job_services.submit_job(actor=Actor(user=who), model=model, upload=upload,
                                   **{"chunk_size": 7, "output_format": "jsonl", **options})


def make_schedule(model: Any, who: Any, template: BatchJob, name: str = "nightly", cron: str = "0 3 * * *",
                  version: int | None = None, created_at: datetime = T0) -> JobSchedule:
    schedule = schedules.create_schedule(actor=Actor(user=who), model=model, name=name, cron=cron, template=template,
                                         version=version)
    JobSchedule.objects.filter(pk=schedule.pk).update(created_at=created_at)  # the clock the test runs on
    schedule.refresh_from_db()
    return schedule


def events(prefix: str = "schedule.") -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action__startswith=prefix).order_by("id"))


def after(event: AuditEvent) -> dict[str, Any]:
    return event.after or {}


def signed_in(who: str) -> Client:
    client = Client()
    assert client.login(username=who, password=PASSWORD)
    return client


@pytest.fixture
def template(iris: Any, cast: dict[str, Any]) -> BatchJob:
    return submit_template(iris, cast["engineer"])


# -- the cron expression -------------------------------------------------------------------------

USAGE = "'cron' must be five fields: minute hour day-of-month month day-of-week (UTC), e.g. '0 3 * * *'"
SYNTAX = "is not valid: use a number, '*', a range 'a-b', a list 'a,b' or a step '*/n' or 'a-b/n'"
CRON_REFUSALS = [
    ("", USAGE),
    ("0 3 * *", USAGE),
    ("0 3 * * * *", USAGE),
    ("@daily", USAGE),
    ("60 3 * * *", "'cron' minute '60': 60 is out of range 0-59"),
    ("0 24 * * *", "'cron' hour '24': 24 is out of range 0-23"),
    ("0 3 0 * *", "'cron' day-of-month '0': 0 is out of range 1-31"),
    ("0 3 * 13 *", "'cron' month '13': 13 is out of range 1-12"),
    ("0 3 * * 7", "'cron' day-of-week '7': 7 is out of range 0-6 (0 is Sunday)"),
    ("*/0 3 * * *", "'cron' minute '*/0': a step must be 1 or more"),
    ("5/15 * * * *", f"'cron' minute '5/15' {SYNTAX}"),
    ("*/5/2 * * * *", f"'cron' minute '*/5/2' {SYNTAX}"),
    ("1,,2 * * * *", f"'cron' minute '1,,2' {SYNTAX}"),
    ("-1 * * * *", f"'cron' minute '-1' {SYNTAX}"),
    ("mon 3 * * *", "'cron' minute 'mon': 'mon' is not a number 0-59"),
    ("0 3 * foo *", "'cron' month 'foo': 'foo' is not a number 1-12 nor a name (jan-dec)"),
    ("0 3 * * jan", "'cron' day-of-week 'jan': 'jan' is not a number 0-6 nor a name (sun-sat)"),
    ("0 3 30 2 *", "'cron' day-of-month '30' never occurs in month '2'"),
    ("0 3 31 4,6 *", "'cron' day-of-month '31' never occurs in month '4,6'"),
    ("0 " * 50 + "3", "'cron' must be at most 100 characters"),
]


@pytest.mark.parametrize(("cron", "message"), CRON_REFUSALS, ids=[c[:20] or "empty" for c, _ in CRON_REFUSALS])
def test_a_cron_expression_is_refused_naming_the_field_and_its_problem(cron: str, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        schedules.parse_cron(cron)
    assert refused.value.message == message


@pytest.mark.parametrize(("cron", "after", "expected"), [
    ("0 3 * * *", T0, datetime(2030, 1, 7, 3, 0, tzinfo=UTC)),
    ("0 3 * * *", datetime(2030, 1, 7, 3, 0, 5, tzinfo=UTC), datetime(2030, 1, 8, 3, 0, tzinfo=UTC)),
    ("*/15 * * * *", T0, datetime(2030, 1, 7, 3, 0, tzinfo=UTC)),
    ("30 9 * * mon-fri", datetime(2030, 1, 11, 10, 0, tzinfo=UTC), datetime(2030, 1, 14, 9, 30, tzinfo=UTC)),
    ("0 0 1 jan,jul *", T0, datetime(2030, 7, 1, 0, 0, tzinfo=UTC)),
    ("0 0 29 2 *", T0, datetime(2032, 2, 29, 0, 0, tzinfo=UTC)),
    ("0 12 * * 0", T0, datetime(2030, 1, 13, 12, 0, tzinfo=UTC)),
    # In another timezone, the same instant: the expression is read in UTC.
    ("0 3 * * *", T0.astimezone(timezone.get_fixed_timezone(-300)), datetime(2030, 1, 7, 3, 0, tzinfo=UTC)),
])
def test_the_next_run_is_the_first_time_the_expression_fires_after_in_utc(cron: str, after: datetime,
                                                                          expected: datetime) -> None:
    assert schedules.next_run_after(cron, after) == expected


@pytest.mark.django_db
def test_a_schedule_is_due_from_its_fire_time_counted_from_its_last_run(
        iris: Any, cast: dict[str, Any], template: BatchJob) -> None:
    schedule = make_schedule(iris, cast["engineer"], template)
    assert schedules.next_run_at(schedule) == datetime(2030, 1, 7, 3, 0, tzinfo=UTC)
    assert not schedules.is_due(schedule, datetime(2030, 1, 7, 2, 59, 59, 999999, tzinfo=UTC))
    assert schedules.is_due(schedule, datetime(2030, 1, 7, 3, 0, tzinfo=UTC))
    assert schedules.is_due(schedule, datetime(2030, 1, 9, 12, 0, tzinfo=UTC))  # late: still one run due
    schedule.last_run_at = datetime(2030, 1, 7, 3, 0, 20, tzinfo=UTC)
    assert not schedules.is_due(schedule, datetime(2030, 1, 8, 2, 59, tzinfo=UTC))
    assert schedules.is_due(schedule, datetime(2030, 1, 8, 3, 0, tzinfo=UTC))
    schedule.enabled = False
    assert schedules.next_run_at(schedule) is None
    assert not schedules.is_due(schedule, datetime(2030, 1, 8, 3, 0, tzinfo=UTC))


# -- runs ----------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_due_run_submits_the_template_file_again_once(iris: Any, cast: dict[str, Any], template: BatchJob) -> None:
    schedule = make_schedule(iris, cast["engineer"], template)
    assert schedules.run_due_schedules(now=T0) == 0
    at = datetime(2030, 1, 7, 3, 0, 10, tzinfo=UTC)
    assert schedules.run_due_schedules(now=at) == 1
    assert schedules.run_due_schedules(now=at) == 0
    assert schedules.run_due_schedules(now=at + timedelta(hours=12)) == 0

    job = BatchJob.objects.get(schedule=schedule)
    assert job.pk != template.pk and job.state == JobState.QUEUED and job.version.number == 1
    assert (job.input_name, job.input_format, job.input_sha256, job.rows_total, job.chunk_size, job.chunks_total,
            job.output_format) == (template.input_name, "csv", template.input_sha256, 20, 7, 3, "jsonl")
    assert job.created_by is None
    source = Path(settings.MEDIA_ROOT, job.folder, "source.csv")
    assert source.read_bytes() == csv_rows() and Path(settings.MEDIA_ROOT, template.folder, "source.csv").exists()
    schedule.refresh_from_db()
    assert schedule.last_run_at == at

    ran = events("schedule.ran")
    assert len(ran) == 1 and ran[0].actor_username == "beat" and ran[0].object_id == str(schedule.pk)
    assert after(ran[0])["job"] == str(job.uid) and after(ran[0])["job_version"] == 1
    submitted = AuditEvent.objects.filter(action="job.submitted", object_id=str(job.pk)).get()
    assert submitted.actor_username == "beat"

    assert schedules.run_due_schedules(now=datetime(2030, 1, 8, 3, 0, 1, tzinfo=UTC)) == 1
    assert BatchJob.objects.filter(schedule=schedule).count() == 2


@pytest.mark.django_db
def test_each_run_takes_the_pinned_version_or_what_the_deployment_serves_then(
        iris: Any, cast: dict[str, Any], template: BatchJob) -> None:
    served = make_schedule(iris, cast["engineer"], template, name="served")
    pinned = make_schedule(iris, cast["engineer"], template, name="pinned", version=1)
    Deployment.objects.filter(model=iris).update(active_version=iris.versions.get(number=2))
    assert schedules.run_due_schedules(now=datetime(2030, 1, 7, 3, 0, 1, tzinfo=UTC)) == 2
    assert BatchJob.objects.get(schedule=served).version.number == 2
    assert BatchJob.objects.get(schedule=pinned).version.number == 1


@pytest.mark.django_db
def test_a_refused_run_is_audited_with_its_reason_and_the_others_still_run(
        iris: Any, cast: dict[str, Any], template: BatchJob) -> None:
    removed = submit_template(iris, cast["engineer"])
    gone = make_schedule(iris, cast["engineer"], removed, name="a-gone")
    not_ready = make_schedule(iris, cast["engineer"], template, name="b-not-ready", version=2)
    fine = make_schedule(iris, cast["engineer"], template, name="c-fine")
    Path(settings.MEDIA_ROOT, removed.folder, "source.csv").unlink()
    ModelVersion.objects.filter(model=iris, number=2).update(status="failed")
    folders_before = sorted(p.name for p in Path(settings.MEDIA_ROOT, "jobs").iterdir())

    now = datetime(2030, 1, 7, 3, 0, 1, tzinfo=UTC)
    assert schedules.run_due_schedules(now=now) == 1
    assert BatchJob.objects.filter(schedule=fine).count() == 1
    assert not BatchJob.objects.filter(schedule__in=[gone, not_ready]).exists()
    failed = events("schedule.failed")
    assert [(e.object_id, after(e)["reason"], e.actor_username) for e in failed] == [
        (str(gone.pk), f"job {removed.uid}'s input file was removed: a new job needs a job whose files remain", "beat"),
        (str(not_ready.pk), "version 2 of 'iris' is failed, not ready: a job needs a version that validated", "beat"),
    ]
    folders = sorted(p.name for p in Path(settings.MEDIA_ROOT, "jobs").iterdir())
    assert len(folders) == len(folders_before) + 1  # the refused runs left nothing behind
    # The refused run is claimed: skipped until the next fire time, not tried again every 30 s.
    assert schedules.run_due_schedules(now=now + timedelta(minutes=5)) == 0
    assert len(events("schedule.failed")) == 2
    assert schedules.last_failure(not_ready) == {"at": failed[1].created_at, "reason": after(failed[1])["reason"]}
    assert schedules.last_failure(fine) is None


@pytest.mark.django_db(transaction=True)
def test_the_beat_task_submits_one_job_per_due_run_called_twice_in_a_row_or_at_once(
        iris: Any, cast: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # Real commits here: the jobs' chunks would go to the session's worker, which would run them
    # while this test's tables are emptied (a flush that deadlocked with it). Not under test here.
    monkeypatch.setattr(job_services, "queue_chunks", lambda *args, **kwargs: None)
    template = submit_template(iris, cast["engineer"])
    one = make_schedule(iris, cast["engineer"], template, name="one", cron="* * * * *",
                        created_at=timezone.now() - timedelta(minutes=2))
    two = make_schedule(iris, cast["engineer"], template, name="two", cron="* * * * *",
                        created_at=timezone.now() - timedelta(minutes=2))
    assert run_due_job_schedules() == 2
    assert run_due_job_schedules() == 0  # a beat restart right after: nothing due twice
    assert BatchJob.objects.filter(schedule=one).count() == 1 and BatchJob.objects.filter(schedule=two).count() == 1

    # Due again; four beats at the same instant, each on its own connection.
    JobSchedule.objects.update(last_run_at=timezone.now() - timedelta(minutes=2))
    now, start = timezone.now(), threading.Barrier(4)
    counts: list[int] = []

    def beat() -> None:
        try:
            start.wait()
            counts.append(schedules.run_due_schedules(now=now))
        finally:
            connection.close()

    threads = [threading.Thread(target=beat) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(counts) == 4 and sum(counts) == 2  # each schedule's run by one beat, whichever
    assert BatchJob.objects.filter(schedule=one).count() == 2 and BatchJob.objects.filter(schedule=two).count() == 2
    assert len(events("schedule.ran")) == 4 and not events("schedule.failed")


@pytest.mark.django_db
def test_a_template_keeps_its_files_past_retention(iris: Any, cast: dict[str, Any], template: BatchJob) -> None:
    other = submit_template(iris, cast["engineer"])
    make_schedule(iris, cast["engineer"], template)
    long_ago = timezone.now() - timedelta(days=settings.PADDOCK_JOB_RETENTION_DAYS + 1)
    BatchJob.objects.update(state=JobState.SUCCEEDED, finished_at=long_ago)
    assert job_services.remove_expired_files() == 1
    assert Path(settings.MEDIA_ROOT, template.folder, "source.csv").exists()
    assert not Path(settings.MEDIA_ROOT, other.folder).exists()


# -- the API -------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_an_engineer_creates_disables_enables_and_deletes_a_schedule_each_audited(
        iris: Any, template: BatchJob, client_for: Callable[..., APIClient]) -> None:
    engineer = client_for("engineer")
    created = engineer.post(API, {"name": "nightly", "cron": " 0  3 * * * ", "template": str(template.uid)},
                            format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert {k: body[k] for k in ("name", "model", "cron", "version", "template", "enabled", "runs", "last_failure",
                                 "created_by")} == {
        "name": "nightly", "model": "iris", "cron": "0 3 * * *", "version": None, "template": str(template.uid),
        "enabled": True, "runs": [], "last_failure": None, "created_by": "engineer"}
    fire = datetime.fromisoformat(body["next_run_at"].replace("Z", "+00:00"))
    assert (fire.hour, fire.minute, fire.second) == (3, 0, 0) and timedelta(0) < fire - timezone.now() <= timedelta(
        days=1)
    assert [s["name"] for s in engineer.get(API).json()] == ["nightly"]

    disabled = engineer.post(f"{API}nightly/disable/")
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    assert disabled.json()["next_run_at"] is None
    again = engineer.post(f"{API}nightly/disable/")
    assert (again.status_code, again.json()) == (
        409, {"detail": "schedule 'nightly' of model 'iris' is already disabled"})
    enabled = engineer.post(f"{API}nightly/enable/")
    assert enabled.status_code == 200 and enabled.json()["enabled"] is True and enabled.json()["next_run_at"]
    again = engineer.post(f"{API}nightly/enable/")
    assert (again.status_code, again.json()) == (
        409, {"detail": "schedule 'nightly' of model 'iris' is already enabled"})

    schedule = JobSchedule.objects.get()
    schedules.run_schedule(schedule_id=schedule.pk, now=timezone.now() + timedelta(days=1, minutes=1))
    run = BatchJob.objects.get(schedule=schedule)
    runs = engineer.get(f"{API}nightly/").json()["runs"]
    assert [(r["id"], r["state"], r["version"]) for r in runs] == [(str(run.uid), "queued", 1)]

    deleted = engineer.delete(f"{API}nightly/")
    assert deleted.status_code == 204 and not JobSchedule.objects.exists()
    run.refresh_from_db()
    assert run.schedule is None  # the jobs it made stay
    gone = engineer.get(f"{API}nightly/")
    assert gone.status_code == 404 and gone.json() == {"detail": "model 'iris' has no schedule 'nightly'"}
    assert [(e.action, e.actor_username) for e in events()] == [
        ("schedule.created", "engineer"), ("schedule.disabled", "engineer"), ("schedule.enabled", "engineer"),
        ("schedule.ran", "beat"), ("schedule.deleted", "engineer")]
    assert (events()[1].before or {})["enabled"] is True and after(events()[1])["enabled"] is False


def refusals(template: BatchJob) -> list[tuple[dict[str, Any], int, str]]:
    uid = str(template.uid)
    return [
        ({"cron": "0 25 * * *"}, 400, "'cron' hour '25': 25 is out of range 0-23"),
        ({"cron": "daily"}, 400, USAGE),
        ({"cron": 3}, 400, USAGE),
        ({"name": "not a slug"}, 400, "'name' must be a slug of at most 60 characters: letters, digits, '-' and '_'"),
        ({"name": 5}, 400, "'name' must be a string"),
        ({"colour": "red"}, 400, "unknown field 'colour'"),
        ({"template": 5}, 400, "'template' must be a job id (a UUID)"),
        ({"version": "1"}, 400, "'version' must be a version number (1 or more), or null for what the deployment "
                                "serves at each run"),
        ({"version": 0}, 400, "'version' must be a version number (1 or more), or null for what the deployment "
                              "serves at each run"),
        ({"template": "00000000-0000-0000-0000-000000000000"}, 404,
         "model 'iris' has no job 00000000-0000-0000-0000-000000000000"),
        ({"template": "nope"}, 404, "model 'iris' has no job nope"),
        ({"version": 9}, 404, "model 'iris' has no version 9"),
        ({"version": 3}, 409, "version 3 of 'iris' is pending, not ready: a schedule pins a version that validated"),
        ({"name": "taken"}, 409, "model 'iris' already has a schedule named 'taken'"),
        ({"template": "removed"}, 409, f"job {uid}'s input file was removed (retention): a schedule needs a job whose "
                                       "files remain"),
    ]


@pytest.mark.django_db
def test_every_refusal_says_what_is_wrong_with_its_status(
        iris: Any, cast: dict[str, Any], template: BatchJob, client_for: Callable[..., APIClient]) -> None:
    from registry import services as registry_services
    from tests import models as built

    registry_services.register_version(actor=Actor(user=cast["engineer"]), model=iris,
                                       upload=SimpleUploadedFile("m.onnx", built.mlp_onnx(seed=3)))  # v3, pending
    make_schedule(iris, cast["engineer"], template, name="taken")
    removed = submit_template(iris, cast["engineer"])
    BatchJob.objects.filter(pk=removed.pk).update(files_removed_at=timezone.now())
    engineer = client_for("engineer")
    for missing in ("name", "cron", "template"):
        body = {"name": "x", "cron": "0 3 * * *", "template": str(template.uid)}
        del body[missing]
        answer = engineer.post(API, body, format="json")
        assert (answer.status_code, answer.json()) == (400, {"detail": f"'{missing}' is required"})
    for change, status, message in refusals(removed):
        body = {"name": "fresh", "cron": "0 3 * * *", "template": str(template.uid), **change}
        if change.get("template") == "removed":
            body["template"] = str(removed.uid)
        answer = engineer.post(API, body, format="json")
        assert (answer.status_code, answer.json()) == (status, {"detail": message}), change
    assert JobSchedule.objects.count() == 1 and [e.action for e in events()] == ["schedule.created"]


@pytest.mark.django_db
def test_viewers_read_outsiders_see_nothing_and_tokens_need_their_scope(
        iris: Any, cast: dict[str, Any], template: BatchJob, client_for: Callable[..., APIClient]) -> None:
    make_schedule(iris, cast["engineer"], template)
    body = {"name": "other", "cron": "0 3 * * *", "template": str(template.uid)}
    forbidden = {"detail": "the engineer role in team 'ml' is required to change this model"}
    viewer = client_for("viewer")
    assert viewer.get(API).status_code == 200 and viewer.get(f"{API}nightly/").json()["name"] == "nightly"
    for answer in (viewer.post(API, body, format="json"), viewer.post(f"{API}nightly/disable/"),
                   viewer.post(f"{API}nightly/enable/"), viewer.delete(f"{API}nightly/")):
        assert (answer.status_code, answer.json()) == (403, forbidden)
    outsider = client_for("outsider")
    for answer in (outsider.get(API), outsider.get(f"{API}nightly/"), outsider.post(API, body, format="json"),
                   outsider.delete(f"{API}nightly/")):
        assert (answer.status_code, answer.json()) == (404, {"detail": "model 'iris' not found"})
    read_only = client_for("engineer", "read")
    answer = read_only.post(API, body, format="json")
    assert (answer.status_code, answer.json()) == (403, {"detail": "token lacks the 'manage' scope"})
    assert client_for("admin").post(f"{API}nightly/disable/").status_code == 200
    assert [e.action for e in events()] == ["schedule.created", "schedule.disabled"]


# -- the console ---------------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_jobs_page_loads_the_schedules_card_and_its_buttons_work(
        iris: Any, cast: dict[str, Any], template: BatchJob) -> None:
    engineer = signed_in("engineer")
    page = engineer.get("/models/iris/jobs/")
    assert page.status_code == 200 and b'hx-get="/models/iris/schedules/"' in page.content
    assert engineer.get("/models/iris/schedules/").status_code == 302  # without htmx: the jobs page
    card = engineer.get("/models/iris/schedules/", headers=HTMX)
    assert card.status_code == 200 and b"No schedules yet." in card.content
    assert str(template.uid).encode() in card.content  # offered as a template

    bad = engineer.post("/models/iris/schedules/", {"name": "nightly", "cron": "0 3 * *",
                                                    "template": str(template.uid)}, headers=HTMX)
    assert bad.status_code == 400 and USAGE.replace("'", "&#x27;").encode() in bad.content
    created = engineer.post("/models/iris/schedules/", {"name": "nightly", "cron": "0 3 * * *",
                                                        "template": str(template.uid), "version": "2"}, headers=HTMX)
    assert created.status_code == 201
    assert b"Schedule &#x27;nightly&#x27; created: 0 3 * * * (UTC)." in created.content
    assert b'id="schedule-nightly" data-enabled="true"' in created.content
    schedule = JobSchedule.objects.get()
    assert schedule.version is not None and schedule.version.number == 2 and schedule.template_id == template.pk
    fire = schedules.next_run_at(schedule)
    assert fire is not None and fire.strftime("%Y-%m-%d %H:%M").encode() in created.content

    disabled = engineer.post("/models/iris/schedules/nightly/disable/", headers=HTMX)
    assert disabled.status_code == 200 and b'data-enabled="false"' in disabled.content
    assert b"/models/iris/schedules/nightly/enable/" in disabled.content
    enabled = engineer.post("/models/iris/schedules/nightly/enable/", headers=HTMX)
    assert enabled.status_code == 200 and b'data-enabled="true"' in enabled.content
    again = engineer.post("/models/iris/schedules/nightly/enable/", headers=HTMX)
    assert again.status_code == 409 and b"is already enabled" in again.content
    deleted = engineer.post("/models/iris/schedules/nightly/delete/", headers=HTMX)
    assert deleted.status_code == 200 and b"Schedule &#x27;nightly&#x27; deleted." in deleted.content
    assert not JobSchedule.objects.exists()
    assert engineer.post("/models/iris/schedules/nightly/explode/", headers=HTMX).status_code == 404


@pytest.mark.django_db
def test_viewers_see_the_card_without_buttons_and_cannot_change_it(
        iris: Any, cast: dict[str, Any], template: BatchJob) -> None:
    make_schedule(iris, cast["engineer"], template)
    viewer = signed_in("viewer")
    card = viewer.get("/models/iris/schedules/", headers=HTMX)
    assert card.status_code == 200 and b'id="schedule-nightly"' in card.content
    assert b"schedule-form" not in card.content and b"/nightly/disable/" not in card.content
    refused = viewer.post("/models/iris/schedules/nightly/disable/", headers=HTMX)
    assert refused.status_code == 403 and b"the engineer role in team &#x27;ml&#x27; is required" in refused.content
    assert JobSchedule.objects.get().enabled
    assert signed_in("outsider").get("/models/iris/schedules/", headers=HTMX).status_code == 404


@pytest.mark.django_db
def test_the_card_shows_the_last_runs_and_why_the_latest_was_refused(
        iris: Any, cast: dict[str, Any], template: BatchJob) -> None:
    fine = make_schedule(iris, cast["engineer"], template, name="fine")
    refused = make_schedule(iris, cast["engineer"], template, name="refused", version=2)
    ModelVersion.objects.filter(model=iris, number=2).update(status="failed")
    assert schedules.run_due_schedules(now=datetime(2030, 1, 7, 3, 0, 1, tzinfo=UTC)) == 1
    run = BatchJob.objects.get(schedule=fine)
    card = signed_in("engineer").get("/models/iris/schedules/", headers=HTMX).content.decode()
    row = card[card.index('id="schedule-fine"'):card.index('id="schedule-refused"')]
    assert f"/models/iris/jobs/{run.uid}/" in row and ">queued</a>" in row and "refused" not in row
    assert ("last run refused: version 2 of &#x27;iris&#x27; is failed, not ready: a job needs a version that "
            "validated") in card[card.index('id="schedule-refused"'):]
    assert schedules.last_failure(refused) is not None
