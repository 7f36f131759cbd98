"""Changes made in the Django admin (users, teams, memberships, models) are audited too."""

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from console.models import AuditEvent, Team

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
    assert event.after["name"] == "vision"


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
    assert deployment.shadow_version.number == 2 and deployment.shadow_percent == 5
    event = AuditEvent.objects.filter(action="deployment.configure").latest("id")
    assert event.actor_username == "admin" and event.after["routes"][1] == {"version": 2, "weight": 20}
    assert event.after["shadow_version"] == 2
