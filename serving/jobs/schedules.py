"""Recurring batch jobs (docs/jobs.md, "Recurring jobs"): a schedule scores its template job's kept
input file again whenever its cron expression fires (five fields, UTC, read and evaluated by
Celery's own `crontab`). One beat task, serving.tasks.run_due_job_schedules, calls
`run_due_schedules` every 30 s. Every change to a schedule is one transaction with its audit event;
each run is `schedule.ran` (with the new job) or `schedule.failed` (with the reason).

`last_run_at` is the moment the next fire time is counted from: when the last run was claimed,
or when the schedule was enabled again (a schedule switched back on waits for its next time
rather than catching up on the runs it missed); `created_at` until then."""

import logging
import re
import shutil
from datetime import UTC, datetime
from typing import Any

from celery.schedules import crontab
from django.db import IntegrityError, transaction
from django.utils import timezone

from console.audit import Actor, record_event
from console.errors import Conflict, InvalidInput, NotFound, PaddockError
from console.models import AuditEvent
from registry.choices import VersionStatus
from registry.models import ModelVersion, RegisteredModel
from serving.jobs import services
from serving.models import BatchJob, JobSchedule
from serving.v2.outage import DATABASE_DOWN

logger = logging.getLogger(__name__)

MAX_NAME = 60
MAX_CRON = 100
RUNS_SHOWN = 5
CRON_USAGE = "'cron' must be five fields: minute hour day-of-month month day-of-week (UTC), e.g. '0 3 * * *'"
# (label, lowest, highest, names in order from `lowest`): the five fields, in their order.
CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day-of-week", 0, 6, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_SLUG = re.compile(r"[-a-zA-Z0-9_]+")
# One item of a field: '*', 'a', 'a-b', '*/n' or 'a-b/n' (Celery's parser would also take 'a/n'
# as nothing it means, and ignore what follows a second '/': such text is refused here first).
_ITEM = re.compile(r"(?P<span>\*|(?P<low>[0-9a-z]+)(?:-(?P<high>[0-9a-z]+))?)(?:/(?P<step>[0-9]+))?")


# -- the cron expression -----------------------------------------------------------------------

def _check_value(label: str, text: str, value: str, low: int, high: int, names: tuple[str, ...]) -> None:
    if value.isdigit():
        if not low <= int(value) <= high:
            sunday = " (0 is Sunday)" if label == "day-of-week" else ""
            raise InvalidInput(f"'cron' {label} '{text}': {int(value)} is out of range {low}-{high}{sunday}")
    elif not names or value not in names:
        if names:
            raise InvalidInput(f"'cron' {label} '{text}': '{value}' is not a number {low}-{high} nor a name "
                               f"({names[0]}-{names[-1]})")
        raise InvalidInput(f"'cron' {label} '{text}': '{value}' is not a number {low}-{high}")


def _check_field(label: str, text: str, low: int, high: int, names: tuple[str, ...]) -> None:
    """InvalidInput naming the field and what is wrong with it (Celery's parser says less, and
    takes some text that means nothing)."""
    for part in text.split(","):
        item = _ITEM.fullmatch(part)
        if item is None or (item["step"] is not None and item["low"] is not None and item["high"] is None):
            raise InvalidInput(f"'cron' {label} '{text}' is not valid: use a number, '*', a range 'a-b', a list "
                               "'a,b' or a step '*/n' or 'a-b/n'")
        for value in (item["low"], item["high"]):
            if value is not None:
                _check_value(label, text, value, low, high, names)
        if item["step"] is not None and int(item["step"]) == 0:
            raise InvalidInput(f"'cron' {label} '{text}': a step must be 1 or more")


def parse_cron(cron: Any) -> crontab:
    """The cron expression as Celery's crontab, in UTC; InvalidInput with the problem, naming the
    field, when it is not five valid fields."""
    if not isinstance(cron, str) or not cron.strip():
        raise InvalidInput(CRON_USAGE)
    if len(cron) > MAX_CRON:
        raise InvalidInput(f"'cron' must be at most {MAX_CRON} characters")
    fields = cron.lower().split()
    if len(fields) != len(CRON_FIELDS):
        raise InvalidInput(CRON_USAGE)
    for text, (label, low, high, names) in zip(fields, CRON_FIELDS, strict=True):
        _check_field(label, text, low, high, names)
    minute, hour, day_of_month, month, day_of_week = fields
    try:
        schedule = crontab(minute=minute, hour=hour, day_of_week=day_of_week, day_of_month=day_of_month,
                           month_of_year=month)
    except ValueError as exc:  # the fields are checked: what is left is a day no month has
        logger.info("crontab refused %r: %s", cron, exc)
        raise InvalidInput(f"'cron' day-of-month '{day_of_month}' never occurs in month '{month}'") from None
    schedule.tz = UTC  # not the Celery app's timezone: schedules are in UTC whatever it is
    return schedule


def next_run_after(cron: str, after: datetime) -> datetime:
    """The first time the expression fires after `after` (past its minute), in UTC. A day must
    match both day-of-month and day-of-week when both are restricted (Celery's rule)."""
    start, delta, _ = parse_cron(cron).remaining_delta(after.astimezone(UTC), tz=UTC)
    fire: datetime = start + delta
    return fire


def next_run_at(schedule: JobSchedule) -> datetime | None:
    """When the schedule fires next (in the past while a run is overdue); None while disabled."""
    if not schedule.enabled:
        return None
    return next_run_after(schedule.cron, schedule.last_run_at or schedule.created_at)


def is_due(schedule: JobSchedule, now: datetime) -> bool:
    """Whether the schedule is enabled and its next fire time has come at `now`."""
    fire = next_run_at(schedule)
    return fire is not None and fire <= now


# -- reading -----------------------------------------------------------------------------------

def find_schedule(model: RegisteredModel, name: str) -> JobSchedule | None:
    """The model's schedule named `name`, or None (a NUL, which PostgreSQL refuses, names none)."""
    if "\x00" in name:
        return None
    return (JobSchedule.objects.select_related("model", "version", "template", "created_by")
            .filter(model=model, name=name).first())


def recent_runs(schedule: JobSchedule) -> list[BatchJob]:
    """The schedule's last few jobs, newest first."""
    return list(schedule.runs.select_related("version").order_by("-created_at", "-id")[:RUNS_SHOWN])


def last_failure(schedule: JobSchedule) -> dict[str, Any] | None:
    """When and why the schedule's latest run was refused, unless a run succeeded since."""
    event = (AuditEvent.objects.filter(object_type="serving.jobschedule", object_id=str(schedule.pk),
                                       action__in=["schedule.ran", "schedule.failed"])
             .order_by("-id").values("action", "created_at", "after").first())
    if event is None or event["action"] != "schedule.failed":
        return None
    return {"at": event["created_at"], "reason": (event["after"] or {}).get("reason", "")}


# -- changes -----------------------------------------------------------------------------------

def _pinned(model: RegisteredModel, number: int | None) -> ModelVersion | None:
    if number is None:
        return None
    version = model.versions.filter(number=number).first()
    if version is None:
        raise NotFound(f"model '{model.name}' has no version {number}")
    if version.status != VersionStatus.READY:
        raise Conflict(f"version {number} of '{model.name}' is {version.status}, not ready: a schedule pins a "
                       "version that validated")
    return version


def _taken(model: RegisteredModel, name: str) -> Conflict:
    return Conflict(f"model '{model.name}' already has a schedule named '{name}'")


def create_schedule(*, actor: Actor, model: RegisteredModel, name: str, cron: str, template: BatchJob,
                    version: int | None) -> JobSchedule:
    """Repeat `template` (a job of the model whose input file remains) whenever `cron` fires, by
    `version` or, if None, what the deployment serves at each run. 400 for a refused name, cron or
    template; 404 for an unknown version; 409 for a version not ready, a template whose file was
    removed, or a name taken. One transaction with `schedule.created`."""
    if not isinstance(name, str) or len(name) > MAX_NAME or not _SLUG.fullmatch(name):
        raise InvalidInput(f"'name' must be a slug of at most {MAX_NAME} characters: letters, digits, '-' and '_'")
    parse_cron(cron)
    if template.model_id != model.pk:
        raise InvalidInput(f"job {template.uid} is not a job of model '{model.name}'")
    source = services.job_path(template, f"source.{template.input_format}")
    if template.files_removed_at or not source.is_file():
        raise Conflict(f"job {template.uid}'s input file was removed (retention): a schedule needs a job whose "
                       "files remain")
    pinned = _pinned(model, version)
    if JobSchedule.objects.filter(model=model, name=name).exists():
        raise _taken(model, name)
    schedule = JobSchedule(model=model, name=name, cron=" ".join(cron.split()), version=pinned, template=template,
                           created_by=actor.person)
    try:
        with transaction.atomic():
            schedule.save()
            record_event(actor=actor, action="schedule.created", obj=schedule, after=schedule.snapshot())
    except IntegrityError:  # the same name, created meanwhile by someone else
        raise _taken(model, name) from None
    return schedule


def _set_enabled(*, actor: Actor, schedule: JobSchedule, enabled: bool) -> JobSchedule:
    with transaction.atomic():
        schedule = (JobSchedule.objects.select_for_update(of=("self",))
                    .select_related("model", "version", "template").get(pk=schedule.pk))
        if schedule.enabled == enabled:
            state = "enabled" if enabled else "disabled"
            raise Conflict(f"schedule '{schedule.name}' of model '{schedule.model.name}' is already {state}")
        before = schedule.snapshot()
        schedule.enabled = enabled
        if enabled:  # count from now: the runs missed while it was off are not made up
            schedule.last_run_at = timezone.now()
        schedule.save(update_fields=["enabled", "last_run_at"])
        record_event(actor=actor, action="schedule.enabled" if enabled else "schedule.disabled", obj=schedule,
                     before=before, after=schedule.snapshot())
    return schedule


def enable_schedule(*, actor: Actor, schedule: JobSchedule) -> JobSchedule:
    """Run again from the next time the cron fires (missed runs are not made up); 409 if enabled."""
    return _set_enabled(actor=actor, schedule=schedule, enabled=True)


def disable_schedule(*, actor: Actor, schedule: JobSchedule) -> JobSchedule:
    """Stop the runs (a job already submitted goes on); 409 if already disabled."""
    return _set_enabled(actor=actor, schedule=schedule, enabled=False)


def delete_schedule(*, actor: Actor, schedule: JobSchedule) -> None:
    """Remove the schedule; its jobs stay (without it), and its template's files fall under
    retention again. `schedule.deleted`."""
    with transaction.atomic():
        schedule = (JobSchedule.objects.select_for_update(of=("self",))
                    .select_related("model", "version", "template").get(pk=schedule.pk))
        record_event(actor=actor, action="schedule.deleted", obj=schedule, before=schedule.snapshot())
        schedule.delete()


# -- runs --------------------------------------------------------------------------------------

def run_due_schedules(*, now: datetime) -> int:
    """Submit a job for every enabled schedule due at `now`; how many were submitted. A schedule
    that cannot run (or breaks) is logged and does not stop the others."""
    submitted = 0
    for schedule in JobSchedule.objects.filter(enabled=True).select_related("model").order_by("pk"):
        try:
            if is_due(schedule, now) and run_schedule(schedule_id=schedule.pk, now=now) is not None:
                submitted += 1
        except DATABASE_DOWN:  # the whole beat run is skipped (console.tasks.skipped_while_database_down)
            raise
        except Exception:  # noqa: BLE001 - one broken schedule must not stop the others' runs
            logger.exception("schedule %s of model %s could not run", schedule.name, schedule.model.name)
    return submitted


def run_schedule(*, schedule_id: int, now: datetime) -> BatchJob | None:
    """One run, exactly once however many beats call it:
    1. Lock the schedule's row, skipping it while another beat holds it, and check it is still
       enabled and due (another beat may have run it since it was read).
    2. Claim the run: a conditional UPDATE of `last_run_at` from the value read to `now`.
    3. Submit the template's file again (serving.jobs.services.resubmit_job, in a savepoint):
       `schedule.ran` with the job; if refused, `schedule.failed` with the reason, and the claim
       stays (the run is skipped, not tried again every 30 s).
    Nothing is committed before the end: a beat that dies midway leaves the run to the next one.
    Returns the job, or None when there was nothing to run or the run was refused."""
    made: BatchJob | None = None
    try:
        with transaction.atomic():
            schedule = (JobSchedule.objects.select_for_update(skip_locked=True, of=("self",))
                        .select_related("model", "version", "template__model").filter(pk=schedule_id).first())
            if schedule is None or not is_due(schedule, now):
                return None
            if not JobSchedule.objects.filter(pk=schedule.pk, enabled=True, last_run_at=schedule.last_run_at).update(
                    last_run_at=now):
                return None
            schedule.last_run_at = now
            beat = Actor.system("beat")
            try:
                with transaction.atomic():
                    made = services.resubmit_job(actor=beat, template=schedule.template, schedule=schedule,
                                                 version=schedule.version.number if schedule.version else None)
                    ran = {**schedule.snapshot(), "job": str(made.uid), "job_version": made.version.number}
                    record_event(actor=beat, action="schedule.ran", obj=schedule, after=ran)
                return made
            except DATABASE_DOWN:
                raise
            except Exception as exc:  # noqa: BLE001 - a refused run is recorded, the claim kept
                reason = exc.message if isinstance(exc, PaddockError) else f"unexpected error ({type(exc).__name__})"
                if not isinstance(exc, PaddockError):
                    logger.exception("schedule %s of model %s: run failed", schedule.name, schedule.model.name)
                if made is not None:
                    shutil.rmtree(services.job_path(made), ignore_errors=True)
                    made = None
                logger.warning("schedule %s of model %s: run refused: %s", schedule.name, schedule.model.name, reason)
                record_event(actor=beat, action="schedule.failed", obj=schedule,
                             after={**schedule.snapshot(), "reason": reason})
                return None
    except BaseException:
        if made is not None:  # the run's transaction did not commit: its job's files go with it
            shutil.rmtree(services.job_path(made), ignore_errors=True)
        raise
