"""Sign-ins are throttled and audited (issue 20, item 9's last sentence), through the real web
process's login form: an account's failed sign-ins past PADDOCK_LOGIN_FAILURES_PER_USER (5) are
refused, the right password included, until the window ends; every sign-in, failed or not, and
the throttle's trip are in the audit log with the address."""

import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.cookiejar import CookieJar
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from console.authentication import clear_login_failures
from console.models import AuditEvent
from tests.conftest import PASSWORD
from tests.security.conftest import WebProcess

TARGET = "mallory-target"
WRONG_PASSWORD = "Your username and password didn't match."  # the login page's error for a wrong password
# Past the limit the page says so (for unknown usernames too: it tells nothing about the account).
THROTTLED = "Too many failed sign-ins for this account or from this address: try again later."


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def sign_in(base: str, username: str, password: str) -> tuple[int, str, bool]:
    """POST the login form as a browser would: the status, the page, and whether a session came back."""
    jar = CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect())
    with browser.open(f"{base}/login/", timeout=10) as page:
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.read().decode())
    assert csrf is not None
    form = urllib.parse.urlencode({"username": username, "password": password,
                                   "csrfmiddlewaretoken": csrf.group(1)}).encode()
    try:
        with browser.open(urllib.request.Request(f"{base}/login/", data=form, method="POST"), timeout=10) as answer:
            status, page_text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as redirect:  # 302: signed in
        status, page_text = redirect.code, ""
    return status, page_text, any(cookie.name == "sessionid" for cookie in jar)


@pytest.fixture
def target(transactional_db: Any, cast: dict[str, Any]) -> Iterator[Any]:
    """An account of this test's own; its and 127.0.0.1's counts are forgotten afterwards."""
    user = get_user_model().objects.create_user(TARGET, password=PASSWORD)
    yield user
    clear_login_failures(username=TARGET, address="127.0.0.1")


def events(action: str, **filters: Any) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, **filters).order_by("id"))


def test_an_account_past_its_failed_sign_ins_is_refused_even_with_its_password(
        target: Any, web_process: WebProcess) -> None:
    for _ in range(5):
        status, page, session = sign_in(web_process.url, TARGET, "wrong-password")
        assert (status, session) == (200, False) and WRONG_PASSWORD in page
    status, page, session = sign_in(web_process.url, TARGET, PASSWORD)
    assert (status, session) == (200, False) and THROTTLED in page and WRONG_PASSWORD not in page

    failed = events("user.login_failed", object_id=str(target.pk))
    assert len(failed) == 5
    assert {(e.actor_username, e.client_address, e.object_type, str(e.after)) for e in failed} == {
        ("anonymous", "127.0.0.1", "auth.user", str({"username": TARGET}))}
    [tripped] = events("user.login_throttled", object_id=str(target.pk))
    assert tripped.after == {"username": TARGET, "address": "127.0.0.1", "failures_for_username": 5,
                             "failures_from_address": 5}
    assert events("user.login", object_id=str(target.pk)) == []

    clear_login_failures(username=TARGET)  # an admin's unlock (or the window's end)
    assert sign_in(web_process.url, TARGET, PASSWORD) == (302, "", True)
    [signed_in] = events("user.login", object_id=str(target.pk))
    assert (signed_in.actor_username, signed_in.client_address) == (TARGET, "127.0.0.1")


def test_another_account_from_the_same_address_still_signs_in(target: Any, web_process: WebProcess) -> None:
    for _ in range(5):
        sign_in(web_process.url, TARGET, "wrong-password")
    assert sign_in(web_process.url, "engineer", PASSWORD) == (302, "", True)  # 5 of the address's 20
    assert len(events("user.login", actor_username="engineer")) == 1


def test_an_unknown_username_is_audited_without_an_object(target: Any, web_process: WebProcess) -> None:
    assert sign_in(web_process.url, "no-such-person", "guess")[0] == 200
    [failed] = events("user.login_failed", after__username="no-such-person")
    assert (failed.object_type, failed.object_id, failed.actor_username) == ("auth.user", "", "anonymous")
    clear_login_failures(username="no-such-person")

