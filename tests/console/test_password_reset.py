"""Password reset by email (issue 23, item 3): a known address gets a one-use link that sets a new
password, both steps audited; an unknown one gets the same answer and no email; asking too often
is refused alike for both. Mail goes to Django's locmem backend."""

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client

from console.bodylimit import before_sign_in, without_credentials
from console.models import AuditEvent
from console.passwords import THROTTLED, clear_reset_requests

pytestmark = pytest.mark.django_db
ADDRESS = "127.0.0.1"  # the test client's REMOTE_ADDR
KNOWN, UNKNOWN = "engineer@example.com", "nobody@example.com"
NEW_PASSWORD = "a-brand-new-pass-phrase"


@pytest.fixture(autouse=True)
def _locmem_mail(settings: Any) -> Iterator[None]:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    yield
    for email in (KNOWN, UNKNOWN, "viewer@example.com"):
        clear_reset_requests(email=email)
    clear_reset_requests(address=ADDRESS)


@pytest.fixture
def engineer(cast: dict[str, Any]) -> Any:
    user = cast["engineer"]
    user.email = KNOWN
    user.save()
    return user


def main(response: Any) -> str:
    """What the page says (its <main>): the same for two answers whose forms' CSRF tokens differ."""
    found = re.search(r"<main>(.*)</main>", response.content.decode(), re.S)
    assert found is not None
    return found.group(1)


def test_a_reset_link_is_emailed_and_sets_a_new_password(engineer: Any) -> None:
    browser = Client()
    asked = browser.post("/password-reset/", {"email": "Engineer@Example.com"})
    assert asked.status_code == 302 and asked["Location"] == "/password-reset/sent/"
    [message] = mail.outbox
    assert message.to == [KNOWN] and message.subject == "Reset your Paddock password"
    assert 'reset the password of the Paddock account "engineer"' in message.body
    link = re.search(r"http://testserver(/password-reset/[^/\s]+/[^/\s]+/)", str(message.body))
    assert link is not None

    opened = browser.get(link.group(1), follow=True)  # Django moves the token into the session
    form_url = opened.redirect_chain[-1][0]
    assert opened.status_code == 200 and form_url.endswith("/set-password/")
    assert 'name="new_password1"' in opened.content.decode()
    done = browser.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}, follow=True)
    assert done.redirect_chain == [("/password-reset/complete/", 302)]
    assert "Your new password is set" in done.content.decode()
    assert Client().login(username="engineer", password=NEW_PASSWORD)

    requested, reset = (AuditEvent.objects.get(action=action) for action in
                        ("user.password_reset_requested", "user.password_reset"))
    assert requested.object_id == reset.object_id == str(engineer.pk)
    assert requested.actor_username == "anonymous" and requested.client_address == ADDRESS
    assert requested.after == {"username": "engineer", "email": KNOWN}
    assert reset.actor_username == "engineer" and reset.after == {"username": "engineer", "usable_password": True}
    assert NEW_PASSWORD not in str(reset.after)

    again = Client().get(link.group(1), follow=True)  # one use only
    assert "This link does not work" in again.content.decode()


def test_an_unknown_address_gets_the_same_answer_and_no_email(engineer: Any) -> None:
    unknown = Client().post("/password-reset/", {"email": UNKNOWN}, follow=True)
    known = Client().post("/password-reset/", {"email": KNOWN}, follow=True)
    assert unknown.redirect_chain == known.redirect_chain == [("/password-reset/sent/", 302)]
    assert main(unknown) == main(known)
    assert "If an account has this address, a link to set a new password is on its way" in main(unknown)
    assert [m.to for m in mail.outbox] == [[KNOWN]]
    assert AuditEvent.objects.filter(action="user.password_reset_requested").count() == 1


def test_a_deactivated_persons_address_gets_the_same_answer_and_no_email(cast: dict[str, Any]) -> None:
    viewer = cast["viewer"]
    viewer.email, viewer.is_active = "viewer@example.com", False
    viewer.save()
    response = Client().post("/password-reset/", {"email": "viewer@example.com"})
    assert response.status_code == 302 and response["Location"] == "/password-reset/sent/"
    assert mail.outbox == []
    assert not AuditEvent.objects.filter(action="user.password_reset_requested").exists()


@pytest.mark.parametrize("email", [KNOWN, UNKNOWN])
def test_asking_too_often_is_refused_alike_for_known_and_unknown_addresses(engineer: Any, settings: Any,
                                                                          email: str) -> None:
    settings.PADDOCK_PASSWORD_RESETS_PER_EMAIL = 2
    for _ in range(2):
        assert Client().post("/password-reset/", {"email": email}).status_code == 302
    sent = len(mail.outbox)
    refused = Client().post("/password-reset/", {"email": email})
    assert refused.status_code == 429
    assert f'<p class="error" role="alert">{THROTTLED}</p>' in refused.content.decode()
    assert len(mail.outbox) == sent


def test_a_weak_new_password_is_refused_and_nothing_is_audited(engineer: Any) -> None:
    browser = Client()
    browser.post("/password-reset/", {"email": KNOWN})
    link = re.search(r"http://testserver(/password-reset/\S+/)", str(mail.outbox[0].body))
    assert link is not None
    form_url = browser.get(link.group(1), follow=True).redirect_chain[-1][0]
    refused = browser.post(form_url, {"new_password1": "password", "new_password2": "password"})
    assert refused.status_code == 200
    assert "This password is too common." in refused.content.decode()
    assert not AuditEvent.objects.filter(action="user.password_reset").exists()
    assert get_user_model().objects.get(pk=engineer.pk).check_password("correct-horse-battery")


def test_a_reset_asked_for_with_a_forged_host_is_refused(engineer: Any) -> None:
    """The link is built from the Host header: one Paddock does not serve is refused, no mail sent."""
    response = Client().post("/password-reset/", {"email": KNOWN}, HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert mail.outbox == []


def test_the_login_page_links_to_the_reset(db: Any) -> None:
    assert '<a href="/password-reset/">Forgot your password?</a>' in Client().get("/login/").content.decode()


@pytest.mark.parametrize(("path", "allowed"), [
    ("/password-reset/", True), ("/password-reset/MQ/set-password/", True), ("/login/", True),
    ("/password-reset/sent/", False), ("/teams/", False), ("/people/1/deactivate/", False),
])
def test_the_body_guard_takes_the_reset_forms_before_sign_in(db: Any, path: str, allowed: bool) -> None:
    """The ASGI guard refuses posts without a signed-in session, but for the sign-in forms: the
    reset forms are posted by someone who cannot sign in."""
    assert before_sign_in(path) is allowed
    refusal = without_credentials({"method": "POST", "path": path, "headers": []})
    assert (refusal is None) is allowed
    if refusal is not None:
        assert (refusal.status, refusal.message) == (403, "sign in first: this page takes posts from a signed-in "
                                                           "session only")
