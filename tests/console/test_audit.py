"""The audit log: one append-only, hash-chained event per mutation, listed only to admins."""

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.utils import ProgrammingError
from django.test import Client

from console.models import AppendOnlyError, AuditEvent

pytestmark = pytest.mark.django_db


def test_a_mutation_writes_who_what_when_and_from_where(client_for: Any) -> None:
    client = client_for("engineer", "read", "manage")
    response = client.post("/api/v1/models/", {"name": "iris", "team": "ml", "tags": ["tabular"]}, format="json",
                           HTTP_X_REQUEST_ID="req-123")
    assert response.status_code == 201
    assert response["X-Request-ID"] == "req-123"
    event = AuditEvent.objects.get(action="model.create")
    assert event.actor_username == "engineer"
    assert event.actor_token_name == "engineer-test"
    assert event.object_type == "registry.registeredmodel" and event.object_repr == "iris"
    assert event.before is None
    assert event.after == {"name": "iris", "description": "", "team": "ml", "owner": "engineer",
                           "tags": ["tabular"]}
    assert event.client_address == "127.0.0.1"
    assert event.request_id == "req-123"
    client.patch("/api/v1/models/iris/", {"tags": ["tabular", "v2"]}, format="json")
    update = AuditEvent.objects.get(action="model.update")
    assert update.before == {**event.after, "tags": ["tabular"]}
    assert update.after == {**event.after, "tags": ["tabular", "v2"]}
    assert update.prev_hash == event.hash


def test_a_failed_mutation_writes_no_event(client_for: Any) -> None:
    client = client_for("engineer", "read", "manage")
    client.post("/api/v1/models/", {"name": "iris", "team": "ml"}, format="json")
    response = client.post("/api/v1/models/", {"name": "iris", "team": "ml"}, format="json")
    assert response.status_code == 409
    assert response.json() == {"detail": "a model named 'iris' already exists"}
    assert AuditEvent.objects.filter(action="model.create").count() == 1


def test_events_cannot_be_changed_or_deleted_through_the_orm(client_for: Any) -> None:
    client_for("engineer", "read")
    event = AuditEvent.objects.get(action="token.create")
    event.action = "token.nothing"
    with pytest.raises(AppendOnlyError, match="audit events cannot be updated"):
        event.save()
    with pytest.raises(AppendOnlyError, match="audit events cannot be deleted"):
        event.delete()
    with pytest.raises(AppendOnlyError, match="audit events cannot be updated"):
        AuditEvent.objects.filter(pk=event.pk).update(action="x")
    with pytest.raises(AppendOnlyError, match="audit events cannot be deleted"):
        AuditEvent.objects.all().delete()


def test_the_database_itself_refuses_updates_and_deletes(client_for: Any) -> None:
    client_for("engineer", "read")
    for statement in ("UPDATE console_auditevent SET action = 'x'", "DELETE FROM console_auditevent"):
        with pytest.raises(ProgrammingError, match="audit events are append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(statement)


def test_the_admin_site_offers_no_change_or_delete(cast: dict[str, Any], client_for: Any) -> None:
    client_for("engineer", "read")
    event = AuditEvent.objects.get(action="token.create")
    browser = Client()
    browser.force_login(cast["admin"])
    assert browser.get(f"/admin/console/auditevent/{event.pk}/change/").status_code == 200  # view only
    assert browser.post(f"/admin/console/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert browser.post(f"/admin/console/auditevent/{event.pk}/change/", {"action": "x"}).status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).action == "token.create"


def test_admins_list_and_filter_events_over_the_api(client_for: Any) -> None:
    engineer = client_for("engineer", "read", "manage")
    engineer.post("/api/v1/models/", {"name": "iris", "team": "ml"}, format="json")
    admin = client_for("admin", "admin")
    everything = admin.get("/api/v1/audit/").json()
    assert everything["count"] == AuditEvent.objects.count() >= 3
    creates = admin.get("/api/v1/audit/", {"action": "model.", "actor": "engineer"}).json()["results"]
    assert [e["action"] for e in creates] == ["model.create"]
    assert creates[0]["actor"] == "engineer (token engineer-test)"
    bad = admin.get("/api/v1/audit/", {"since": "yesterday"})
    assert bad.status_code == 400 and bad.json() == {"detail": "'since' is not an ISO 8601 date-time: 'yesterday'"}
    refused = engineer.get("/api/v1/audit/")
    assert refused.status_code == 403 and refused.json() == {"detail": "token lacks the 'admin' scope"}


@pytest.mark.parametrize(("params", "detail"), [
    ({"since": "2026-02-30T10:00:00"}, "'since' is not an ISO 8601 date-time: '2026-02-30T10:00:00'"),
    ({"until": "2026-01-01T00:00:00+25:00"}, "'until' is not an ISO 8601 date-time: '2026-01-01T00:00:00+25:00'"),
    ({"until": "9999-12-31T23:59:59-23:59"}, "'until' is not an ISO 8601 date-time: '9999-12-31T23:59:59-23:59'"),
    ({"action": "model.\x00"}, "'action' must not contain NUL characters"),
    ({"object_id": "\x00"}, "'object_id' must not contain NUL characters"),
])
def test_audit_filters_that_were_500s_are_refused_with_400(client_for: Any, params: dict[str, str],
                                                           detail: str) -> None:
    """No such day, an offset over 24 h (or over PostgreSQL's 15:59), NUL in a text filter."""
    response = client_for("admin", "admin").get("/api/v1/audit/", params)
    assert response.status_code == 400 and response.json() == {"detail": detail}


def test_a_limit_past_64_bits_reads_as_the_largest_page_of_events(client_for: Any) -> None:
    response = client_for("admin", "admin").get("/api/v1/audit/", {"limit": "36893488147419103232"})
    assert response.status_code == 200 and response.json()["count"] == AuditEvent.objects.count()


def test_a_non_admin_session_is_refused_the_audit_api(cast: dict[str, Any]) -> None:
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_login(cast["engineer"])
    response = client.get("/api/v1/audit/")
    assert response.status_code == 403 and response.json() == {"detail": "admin role required"}


def test_verify_audit_reports_an_intact_chain_and_the_first_broken_link(client_for: Any) -> None:
    engineer = client_for("engineer", "read", "manage")
    for name in ("a-model", "b-model", "c-model"):
        engineer.post("/api/v1/models/", {"name": name, "team": "ml"}, format="json")
    out = StringIO()
    call_command("verify_audit", stdout=out)
    assert out.getvalue().strip() == f"audit chain intact: {AuditEvent.objects.count()} events, 0 anchor(s) hold"
    target = AuditEvent.objects.get(action="model.create", object_repr="b-model")
    with connection.cursor() as cursor:
        # Tampering needs the trigger out of the way: exactly what an attacker with DDL rights would do.
        cursor.execute("ALTER TABLE console_auditevent DISABLE TRIGGER audit_event_append_only")
        cursor.execute("UPDATE console_auditevent SET actor_username = 'someone-else' WHERE id = %s", [target.pk])
        cursor.execute("ALTER TABLE console_auditevent ENABLE TRIGGER audit_event_append_only")
    with pytest.raises(CommandError) as error:
        call_command("verify_audit")
    assert str(error.value) == (
        f"audit chain broken at event {target.pk}: its contents do not match its hash (edited after it was written)"
    )
