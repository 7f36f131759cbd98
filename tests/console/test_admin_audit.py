"""Changes made in the Django admin (users, teams, memberships, models) are audited too."""

import json
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from console import services
from console.audit import Actor
from console.errors import InvalidInput
from console.models import AuditEvent, Membership, Team
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_browser(cast: dict[str, Any]) -> Client:
    client = Client()
    client.force_login(cast["admin"])
    return client


def test_creating_a_team_in_the_admin_writes_an_event(admin_browser: Client) -> None:
    response = admin_browser.post("/admin/console/team/add/", {
        "name": "vision", "description": "Images",
        "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
    })
    assert response.status_code == 302, response.content[:2000]
    team = Team.objects.get(name="vision")
    event = AuditEvent.objects.get(action="team.create")
    assert event.actor_username == "admin" and event.object_id == str(team.pk)
    assert event.after is not None and event.after["name"] == "vision"


@pytest.mark.parametrize("name", ["asgi", "paddock-prefix"])
def test_a_team_named_like_paddocks_own_redis_keys_is_refused(admin_browser: Client, name: str,
                                                              settings: Any) -> None:
    """A team's stream keys start with its name and a colon: these names are Paddock's own keys'
    prefixes (the data plane's, Channels'), in the admin and through the service alike."""
    settings.PADDOCK_REDIS_PREFIX = "paddock-prefix"
    response = admin_browser.post("/admin/console/team/add/", {
        "name": name, "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"})
    assert response.status_code == 200
    assert f"&#x27;{name}&#x27; is reserved: Paddock&#x27;s own Redis keys start with &#x27;{name}:&#x27;" in \
        response.content.decode()
    with pytest.raises(InvalidInput) as refused:
        services.create_team(actor=Actor.system("tests"), name=name)
    assert refused.value.message == (f"'{name}' is reserved: Paddock's own Redis keys start with '{name}:', and a "
                                     "team's stream keys start with its name; choose another team name")
    assert not Team.objects.filter(name=name).exists()
    assert not AuditEvent.objects.filter(action="team.create").exists()


def test_changing_a_user_in_the_admin_records_before_and_after_without_the_password(
    admin_browser: Client, cast: dict[str, Any]
) -> None:
    viewer = cast["viewer"]
    response = admin_browser.post(f"/admin/auth/user/{viewer.pk}/change/", {
        "username": "viewer", "first_name": "Vera", "last_name": "", "email": "", "is_active": "on",
        "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00",
        "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
    })
    assert response.status_code == 302, response.content[:2000]
    event = AuditEvent.objects.get(action="user.update")
    assert event.before is not None and event.after is not None
    assert event.before["first_name"] == "" and event.after["first_name"] == "Vera"
    assert "password" not in event.after
    assert get_user_model().objects.get(pk=viewer.pk).first_name == "Vera"


def _deployment_form(iris: Any, **changes: Any) -> dict[str, Any]:
    form = {"model": iris.pk, "active_version": iris.versions.get(number=1).pk, "max_batch_size": 64,
            "max_queue_delay_ms": 0, "preferred_batch_sizes": "[]", "max_queue_depth": 1024,
            "default_timeout_ms": 30000, "min_workers": 1, "instances": 1, "routes": "[]", "shadow_version": "",
            "shadow_percent": 0, "sticky_by": "", "sticky_key": "", "updated_at_0": "2026-11-23",
            "updated_at_1": "10:00:00"}
    form.update(changes)
    return form


def test_traffic_set_in_the_admin_goes_through_the_audited_service(admin_browser: Client, iris: Any) -> None:
    from serving.models import Deployment

    deployment = Deployment.objects.get(model=iris)
    url = f"/admin/serving/deployment/{deployment.pk}/change/"
    bad = admin_browser.post(url, _deployment_form(iris, routes='[{"version": 1, "weight": 70}]'))
    assert bad.status_code == 200 and "route weights must sum to 100, not 70" in bad.content.decode()
    split = '[{"version": 1, "weight": 80}, {"version": 2, "weight": 20}]'
    response = admin_browser.post(url, _deployment_form(iris, routes=split, shadow_version=iris.versions.get(
        number=2).pk, shadow_percent=5))
    assert response.status_code == 302, response.content.decode()[-3000:]
    deployment.refresh_from_db()
    assert deployment.routes == [{"version": 1, "weight": 80}, {"version": 2, "weight": 20}]
    assert deployment.snapshot()["shadow_version"] == 2 and deployment.shadow_percent == 5
    event = AuditEvent.objects.filter(action="deployment.configure").latest("id")
    assert event.actor_username == "admin" and event.after is not None
    assert event.after["routes"][1] == {"version": 2, "weight": 20} and event.after["shadow_version"] == 2


def last_event_id() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def test_changing_a_password_in_the_admin_writes_one_event_without_secrets(
    admin_browser: Client, cast: dict[str, Any]
) -> None:
    viewer = cast["viewer"]
    mark = last_event_id()
    new = "a-brand-new-horse-battery"
    response = admin_browser.post(f"/admin/auth/user/{viewer.pk}/password/", {
        "usable_password": "true", "password1": new, "password2": new,
    })
    assert response.status_code == 302, response.content.decode()[-2000:]
    viewer.refresh_from_db()
    assert viewer.check_password(new)
    event = AuditEvent.objects.get(id__gt=mark)
    assert event.action == "user.password_change" and event.actor_username == "admin"
    assert event.object_id == str(viewer.pk) and event.before is None
    assert event.after == {"username": "viewer", "usable_password": True}
    written = json.dumps([event.before, event.after, event.object_repr])
    assert new not in written and viewer.password not in written


def test_a_refused_password_change_writes_no_event(admin_browser: Client, cast: dict[str, Any]) -> None:
    viewer = cast["viewer"]
    mark = last_event_id()
    response = admin_browser.post(f"/admin/auth/user/{viewer.pk}/password/", {
        "usable_password": "true", "password1": "a-brand-new-horse", "password2": "another-horse",
    })
    assert response.status_code == 200
    assert "The two password fields didn’t match." in response.content.decode()
    assert not AuditEvent.objects.filter(id__gt=mark).exists()


def test_a_password_change_whose_event_fails_is_not_saved(
    admin_browser: Client, cast: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(**kwargs: Any) -> None:
        raise RuntimeError("the audit log is unavailable")

    monkeypatch.setattr(services, "audit_password_change", refuse)
    with pytest.raises(RuntimeError, match="the audit log is unavailable"):
        admin_browser.post(f"/admin/auth/user/{cast['viewer'].pk}/password/", {
            "usable_password": "true", "password1": "a-brand-new-horse", "password2": "a-brand-new-horse",
        })
    assert get_user_model().objects.get(pk=cast["viewer"].pk).check_password(PASSWORD)


def test_membership_rows_edited_inline_write_one_event_each(
    admin_browser: Client, cast: dict[str, Any], teams: dict[str, Team]
) -> None:
    team = teams["ml"]
    engineer, viewer = (Membership.objects.get(team=team, user=cast[who]) for who in ("engineer", "viewer"))
    mark = last_event_id()
    response = admin_browser.post(f"/admin/console/team/{team.pk}/change/", {
        "name": "ml", "description": "Machine learning",
        "memberships-TOTAL_FORMS": "3", "memberships-INITIAL_FORMS": "2",
        "memberships-0-id": engineer.pk, "memberships-0-team": team.pk, "memberships-0-user": cast["engineer"].pk,
        "memberships-0-role": "viewer",
        "memberships-1-id": viewer.pk, "memberships-1-team": team.pk, "memberships-1-user": cast["viewer"].pk,
        "memberships-1-role": "viewer", "memberships-1-DELETE": "on",
        "memberships-2-team": team.pk, "memberships-2-user": cast["outsider"].pk, "memberships-2-role": "engineer",
    })
    assert response.status_code == 302, response.content.decode()[-2000:]
    events = {e["action"]: e for e in AuditEvent.objects.filter(id__gt=mark).values("action", "object_id",
                                                                                     "before", "after")}
    assert sorted(events) == ["membership.create", "membership.delete", "membership.update", "team.update"]
    assert events["membership.update"]["before"] == {"id": engineer.pk, "team": team.pk, "user": cast["engineer"].pk,
                                                     "role": "engineer"}
    assert events["membership.update"]["after"] == {**events["membership.update"]["before"], "role": "viewer"}
    assert events["membership.delete"]["object_id"] == str(viewer.pk)
    joined = Membership.objects.get(team=team, user=cast["outsider"])
    assert events["membership.create"]["after"] == {"id": joined.pk, "team": team.pk, "user": cast["outsider"].pk,
                                                    "role": "engineer"}


def test_ensure_admin_creates_the_admin_through_the_audited_service(db: Any) -> None:
    call_command("ensure_admin", username="root", stdout=StringIO())
    call_command("ensure_admin", username="root", stdout=StringIO())
    event = AuditEvent.objects.get(action="user.create")
    assert event.actor_username == "ensure_admin" and event.after == {"username": "root", "is_superuser": True}


def test_changing_ones_own_password_in_the_admin_writes_one_event_without_secrets(
    admin_browser: Client, cast: dict[str, Any]
) -> None:
    mark = last_event_id()
    new = "a-brand-new-horse-battery"
    refused = admin_browser.post("/admin/password_change/", {
        "old_password": "not-it", "new_password1": new, "new_password2": new,
    })
    assert refused.status_code == 200 and not AuditEvent.objects.filter(id__gt=mark).exists()
    response = admin_browser.post("/admin/password_change/", {
        "old_password": PASSWORD, "new_password1": new, "new_password2": new,
    })
    assert response.status_code == 302 and response["Location"] == "/admin/password_change/done/"
    admin = get_user_model().objects.get(pk=cast["admin"].pk)
    assert admin.check_password(new)
    event = AuditEvent.objects.get(id__gt=mark)
    assert event.action == "user.password_change" and event.actor_username == "admin"
    assert event.after == {"username": "admin", "usable_password": True}
    assert new not in json.dumps(event.after) and admin.password not in json.dumps(event.after)
