"""Teams and people in the console (issue 23, item 3): admins create teams and people, add,
re-role and remove members, deactivate and reactivate people, each change audited with the
event the admin writes for it; members see their teams read-only, outsiders not at all."""

import html
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from rest_framework.test import APIClient

from console.authentication import clear_login_failures
from console.models import AuditEvent, Membership, Team
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db
ADMINS_ONLY = "only admins manage teams and people: ask one to make this change"
HTMX = {"HX-Request": "true"}


@pytest.fixture
def newbie(cast: dict[str, Any]) -> Any:
    """A person in no team yet."""
    return get_user_model().objects.create_user("newbie", email="newbie@example.com", password=PASSWORD)


@pytest.fixture(autouse=True)
def _forget_failed_sign_ins() -> Iterator[None]:
    yield
    for username in ("engineer", "newbie"):
        clear_login_failures(username=username)
    clear_login_failures(address="127.0.0.1")


def alert(response: Any) -> str:
    """The text of the answer's role="alert" element with a message (what forms.js shows)."""
    found = re.findall(r'<p class="error" role="alert">(.*?)</p>', response.content.decode(), re.S)
    assert found, response.content.decode()[:3000]
    return html.unescape(found[0].strip())


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def activity(event: AuditEvent) -> tuple[bool, bool]:
    """A `user.update` event's is_active, before and after."""
    assert event.before is not None and event.after is not None
    return event.before["is_active"], event.after["is_active"]


def test_an_admin_creates_a_team_and_it_is_audited(browser_as: Callable[[str], Client]) -> None:
    response = browser_as("admin").post("/teams/", {"name": "vision", "description": "Images"}, headers=HTMX)
    assert response.status_code == 201
    html = response.content.decode()
    assert "<html" not in html and "Team &#x27;vision&#x27; created" in html and 'href="/teams/vision/"' in html
    assert Team.objects.get(name="vision").description == "Images"
    [event] = events("team.create")
    assert event.actor_username == "admin" and event.after == {"name": "vision", "description": "Images"}


def test_an_admin_creates_a_person_with_a_password_never_written_to_the_log(
        browser_as: Callable[[str], Client]) -> None:
    response = browser_as("admin").post("/people/", {"username": "dana", "email": "dana@example.com",
                                                    "password": "a-long-pass-phrase-42"})
    assert response.status_code == 201
    assert "User &#x27;dana&#x27; created with the password you gave." in response.content.decode()
    dana = get_user_model().objects.get(username="dana")
    assert dana.check_password("a-long-pass-phrase-42") and dana.is_active and not dana.is_superuser
    [event] = events("user.create")
    assert event.actor_username == "admin" and event.object_id == str(dana.pk)
    assert event.after == {"username": "dana", "email": "dana@example.com", "is_active": True,
                           "is_superuser": False, "usable_password": True}
    assert "a-long-pass-phrase" not in str(event.before) + str(event.after)
    assert Client().login(username="dana", password="a-long-pass-phrase-42")


def test_a_person_created_without_a_password_is_emailed_a_link_to_set_one(
        browser_as: Callable[[str], Client], settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    response = browser_as("admin").post("/people/", {"username": "erin", "email": "erin@example.com",
                                                    "send_link": "on"}, headers=HTMX)
    assert response.status_code == 201
    assert "a link to set a password was emailed to erin@example.com" in response.content.decode()
    erin = get_user_model().objects.get(username="erin")
    assert not erin.has_usable_password()
    [message] = mail.outbox
    assert message.to == ["erin@example.com"] and message.subject == "Your Paddock account"
    assert 'admin created a Paddock account for you: your username is "erin"' in message.body
    link = next(line for line in message.body.splitlines() if "/password-reset/" in line)
    browser = Client()
    form_page = browser.get(link.removeprefix("http://testserver"), follow=True)
    assert form_page.status_code == 200 and b"Set a new password" in form_page.content
    done = browser.post(form_page.redirect_chain[-1][0], {"new_password1": "erins-own-secret-9",
                                                          "new_password2": "erins-own-secret-9"})
    assert done.status_code == 302 and done["Location"] == "/password-reset/complete/"
    assert Client().login(username="erin", password="erins-own-secret-9")
    assert [e.action for e in AuditEvent.objects.filter(object_id=str(erin.pk)).order_by("id")] == [
        "user.create", "user.password_reset_requested", "user.password_reset"]


def test_an_admin_adds_re_roles_and_removes_a_member_each_audited(
        browser_as: Callable[[str], Client], newbie: Any, teams: dict[str, Team]) -> None:
    admin = browser_as("admin")
    added = admin.post("/teams/ml/", {"username": "newbie", "role": "engineer"}, headers=HTMX)
    assert added.status_code == 201
    assert "newbie added to team ml as engineer." in added.content.decode()
    assert Membership.objects.get(team=teams["ml"], user=newbie).role == "engineer"

    changed = admin.post(f"/teams/ml/members/{newbie.pk}/role/", {"role": "viewer"}, headers=HTMX)
    assert changed.status_code == 200 and "newbie is now viewer in team ml." in changed.content.decode()
    assert Membership.objects.get(team=teams["ml"], user=newbie).role == "viewer"

    removed = admin.post(f"/teams/ml/members/{newbie.pk}/remove/")
    assert removed.status_code == 302 and removed["Location"] == "/teams/ml/"
    assert not Membership.objects.filter(team=teams["ml"], user=newbie).exists()

    snapshot = {"team": "ml", "user": "newbie"}
    [create], [update], [delete] = events("membership.create"), events("membership.update"), events("membership.delete")
    assert create.actor_username == update.actor_username == delete.actor_username == "admin"
    assert create.after == {**snapshot, "role": "engineer"}
    assert (update.before, update.after) == ({**snapshot, "role": "engineer"}, {**snapshot, "role": "viewer"})
    assert delete.before == {**snapshot, "role": "viewer"}


def test_giving_a_member_the_role_they_have_changes_nothing(browser_as: Callable[[str], Client],
                                                            cast: dict[str, Any]) -> None:
    response = browser_as("admin").post(f"/teams/ml/members/{cast['engineer'].pk}/role/", {"role": "engineer"},
                                       headers=HTMX)
    assert response.status_code == 200
    assert not AuditEvent.objects.filter(action="membership.update").exists()


@pytest.mark.parametrize(("who", "method", "path", "data"), [
    ("engineer", "post", "/teams/", {"name": "mine"}),
    ("engineer", "post", "/teams/ml/", {"username": "outsider", "role": "engineer"}),
    ("engineer", "post", "/teams/ml/members/{viewer}/role/", {"role": "engineer"}),
    ("viewer", "post", "/teams/ml/members/{engineer}/remove/", {}),
    ("engineer", "get", "/people/", {}),
    ("engineer", "post", "/people/", {"username": "sneaky", "password": "a-long-pass-phrase-42"}),
    ("viewer", "post", "/people/{engineer}/deactivate/", {}),
])
def test_a_non_admin_is_refused_with_a_message_and_nothing_changes(
        browser_as: Callable[[str], Client], cast: dict[str, Any], who: str, method: str, path: str,
        data: dict[str, str]) -> None:
    path = path.format(viewer=cast["viewer"].pk, engineer=cast["engineer"].pk)
    memberships = sorted(Membership.objects.values_list("team__name", "user__username", "role"))
    response = getattr(browser_as(who), method)(path, data)
    assert response.status_code == 403
    assert alert(response) == ADMINS_ONLY
    assert sorted(Membership.objects.values_list("team__name", "user__username", "role")) == memberships
    assert not Team.objects.filter(name="mine").exists()
    assert not get_user_model().objects.filter(username="sneaky").exists()
    assert get_user_model().objects.get(username="engineer").is_active
    assert not AuditEvent.objects.exclude(action__startswith="user.login").exists()


def test_a_refusal_to_htmx_is_the_fragment_with_its_message(browser_as: Callable[[str], Client]) -> None:
    response = browser_as("admin").post("/teams/", {"name": "ml"}, headers=HTMX)
    assert response.status_code == 409
    assert "<html" not in response.content.decode() and alert(response) == "a team named 'ml' already exists"


@pytest.mark.parametrize(("path", "data", "status", "message"), [
    ("/teams/", {"name": "ml"}, 409, "a team named 'ml' already exists"),
    ("/teams/", {"name": "computer vision"}, 400,
     "a team name is 1 to 64 letters, digits, '-' or '_' (e.g. 'vision'): 'computer vision' is not"),
    ("/teams/", {"name": "asgi"}, 400, "'asgi' is reserved: Paddock's own Redis keys start with 'asgi:', and a "
                                       "team's stream keys start with its name; choose another team name"),
    ("/people/", {"username": "Engineer", "password": "a-long-pass-phrase-42"}, 409,
     "a user named 'engineer' already exists"),
    ("/people/", {"username": "eve", "email": "NEWBIE@example.com", "password": "a-long-pass-phrase-42"}, 409,
     "the address NEWBIE@example.com is already used by user 'newbie': a password reset link goes to every "
     "account with the address"),
    ("/people/", {"username": "eve", "password": "eve"}, 400,
     "the password is refused: The password is too similar to the username. This password is too short. It must "
     "contain at least 8 characters. This password is too common."),
    ("/people/", {"username": "eve smith", "password": "a-long-pass-phrase-42"}, 400,
     "'eve smith' is not a valid username: use letters, digits and @ . + - _ only"),
    ("/people/", {"username": "eve", "email": "eve@", "password": "a-long-pass-phrase-42"}, 400,
     "'eve@' is not a valid email address"),
    ("/people/", {"username": "eve", "email": "eve@example.com"}, 400,
     "give an initial password, or tick 'email a link to set a password'"),
    ("/people/", {"username": "eve", "send_link": "on"}, 400, "a set-password email needs the person's email address"),
    ("/people/", {"username": "eve", "email": "eve@example.com", "password": "a-long-pass-phrase-42",
                  "send_link": "on"}, 400, "give either an initial password or a set-password email, not both"),
    ("/teams/ml/", {"username": "engineer", "role": "viewer"}, 409,
     "'engineer' is already a member of team 'ml' as engineer: change their role instead"),
    ("/teams/ml/", {"username": "ghost", "role": "viewer"}, 404, "no user named 'ghost'"),
    ("/teams/ml/", {"username": "gh\x00ost", "role": "viewer"}, 404, "no user named 'gh\x00ost'"),
    ("/teams/", {"name": "nul", "description": "a\x00b"}, 400,
     "a team's description is at most 200 characters, and no NUL characters"),
    ("/teams/ml/", {"username": "newbie", "role": "owner"}, 400, "role 'owner' is not one of: viewer, engineer"),
    ("/teams/ml/members/{outsider}/role/", {"role": "viewer"}, 404, "user {outsider} is not a member of team 'ml'"),
    ("/teams/ml/members/{engineer}/role/", {"role": "admin"}, 400, "role 'admin' is not one of: viewer, engineer"),
    ("/people/{admin}/deactivate/", {}, 403, "you cannot deactivate your own account: another admin must"),
    ("/people/999999/deactivate/", {}, 404, "user 999999 not found"),
])
def test_a_bad_change_is_refused_with_its_reason(browser_as: Callable[[str], Client], cast: dict[str, Any],
                                                 newbie: Any, path: str, data: dict[str, str], status: int,
                                                 message: str) -> None:
    ids = {who: cast[who].pk for who in ("admin", "engineer", "outsider")}
    before = AuditEvent.objects.count()
    response = browser_as("admin").post(path.format(**ids), data)
    assert response.status_code == status
    assert alert(response) == message.format(**ids)
    assert AuditEvent.objects.count() == before


def test_members_see_their_teams_and_members_read_only(browser_as: Callable[[str], Client]) -> None:
    engineer = browser_as("engineer")
    teams = engineer.get("/teams/").content.decode()
    assert 'href="/teams/ml/"' in teams and "/teams/other/" not in teams
    assert 'id="team-form"' not in teams
    page = engineer.get("/teams/ml/")
    html = page.content.decode()
    assert page.status_code == 200
    assert 'id="member-engineer"' in html and 'id="member-viewer"' in html
    assert 'id="member-form"' not in html and "Remove" not in html and "Change role" not in html
    assert engineer.get("/teams/ml/", headers=HTMX).content.decode().startswith('<div id="members"')


def test_an_admin_sees_every_team_and_can_change_them(browser_as: Callable[[str], Client]) -> None:
    admin = browser_as("admin")
    teams = admin.get("/teams/").content.decode()
    assert 'href="/teams/ml/"' in teams and 'href="/teams/other/"' in teams and 'id="team-form"' in teams
    html = admin.get("/teams/other/").content.decode()
    assert 'id="member-outsider"' in html and 'id="member-form"' in html


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/teams/ml/"), ("post", "/teams/ml/"), ("post", "/teams/ml/members/{engineer}/remove/"),
    ("get", "/teams/nowhere/"),
])
def test_an_outsider_gets_404_for_another_teams_page(browser_as: Callable[[str], Client], cast: dict[str, Any],
                                                     method: str, path: str) -> None:
    response = getattr(browser_as("outsider"), method)(path.format(engineer=cast["engineer"].pk),
                                                      {"username": "outsider", "role": "engineer"})
    assert response.status_code == 404
    assert Membership.objects.filter(team__name="ml", user=cast["engineer"]).exists()
    assert not Membership.objects.filter(team__name="ml", user=cast["outsider"]).exists()


def test_a_deactivated_person_cannot_sign_in_and_their_token_is_refused(
        browser_as: Callable[[str], Client], cast: dict[str, Any], client_for: Callable[..., APIClient]) -> None:
    api = client_for("engineer", "read")
    assert api.get("/api/v1/models/").status_code == 200
    admin = browser_as("admin")
    engineers_session = browser_as("engineer")

    response = admin.post(f"/people/{cast['engineer'].pk}/deactivate/", headers=HTMX)
    assert response.status_code == 200 and "&#x27;engineer&#x27; deactivated." in response.content.decode()
    assert 'id="person-engineer" data-active="false"' in response.content.decode()
    [event] = events("user.update")
    assert event.actor_username == "admin" and event.object_id == str(cast["engineer"].pk)
    assert activity(event) == (True, False)

    refused = api.get("/api/v1/models/")
    assert refused.status_code == 401 and refused.json() == {"detail": "token owner is inactive"}
    login = Client().post("/login/", {"username": "engineer", "password": PASSWORD})
    assert login.status_code == 200 and "Your username and password didn't match." in login.content.decode()
    session = engineers_session.get("/teams/")  # the session they had ends at its next request
    assert session.status_code == 302 and session["Location"].startswith("/login/")

    again = admin.post(f"/people/{cast['engineer'].pk}/reactivate/")
    assert again.status_code == 302 and again["Location"] == "/people/"
    assert api.get("/api/v1/models/").status_code == 200  # the token was kept, and works again
    assert [activity(e) for e in events("user.update")] == [(True, False), (False, True)]


def test_deactivating_someone_inactive_changes_nothing(browser_as: Callable[[str], Client],
                                                       cast: dict[str, Any]) -> None:
    admin = browser_as("admin")
    admin.post(f"/people/{cast['viewer'].pk}/deactivate/")
    admin.post(f"/people/{cast['viewer'].pk}/deactivate/")
    assert len(events("user.update")) == 1


def test_the_people_page_lists_everyone_with_their_teams_and_state(browser_as: Callable[[str], Client],
                                                                   cast: dict[str, Any]) -> None:
    cast["viewer"].is_active = False
    cast["viewer"].save()
    html = browser_as("admin").get("/people/").content.decode()
    assert 'id="person-engineer" data-active="true"' in html and 'id="person-viewer" data-active="false"' in html
    assert '<a href="/teams/ml/">ml</a> (engineer)' in html and '<a href="/teams/other/">other</a> (engineer)' in html
    assert 'id="user-form"' in html and 'id="team-form"' in html
    assert ">Reactivate</button>" in html


def test_the_navigation_shows_teams_to_everyone_and_people_to_admins(browser_as: Callable[[str], Client]) -> None:
    engineer = browser_as("engineer").get("/teams/").content.decode()
    admin = browser_as("admin").get("/teams/").content.decode()
    assert '<a href="/teams/">Teams</a>' in engineer and '<a href="/people/">People</a>' not in engineer
    assert '<a href="/teams/">Teams</a>' in admin and '<a href="/people/">People</a>' in admin
