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
