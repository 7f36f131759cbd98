"""Issue 20, item 3: a token never mints a stronger one, and a narrow token of an admin does not
reach everyone's tokens. Each hostile request goes to the real web process; each refusal leaves
no token row and no audit event behind."""

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from console.audit import Actor
from console.models import ApiToken, AuditEvent
from console.services import create_token
from registry import services
from tests.security.conftest import WebProcess

SYSTEM = Actor.system("tests")


def call(base: str, method: str, path: str, raw: str, body: Any = None) -> tuple[int, Any]:
    """One API request with a bearer token; (status, parsed JSON body)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base}{path}", data=data, method=method, headers={
        "Authorization": f"Bearer {raw}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@dataclass
class Minter:
    """A narrow token (`read`, model iris, expiring tomorrow) and the real server it speaks to."""

    base: str
    token: ApiToken
    raw: str

    def mint(self, **fields: Any) -> tuple[int, Any]:
        return call(self.base, "POST", "/api/v1/tokens/", self.raw, {"name": "stronger", **fields})


@pytest.fixture
def models(transactional_db: Any, cast: dict[str, Any], teams: dict[str, Any]) -> None:
    for name in ("iris", "wine"):
        services.create_model(actor=Actor(user=cast["engineer"]), name=name, team=teams["ml"])


@pytest.fixture
def tomorrow() -> datetime:
    return timezone.now() + timedelta(days=1)


@pytest.fixture
def narrow(web_process: WebProcess, models: None, cast: dict[str, Any], tomorrow: datetime) -> Minter:
    token, raw = create_token(actor=SYSTEM, user=cast["engineer"], name="narrow", scopes=["read"],
                              model_names=["iris"], expires_at=tomorrow)
    token.refresh_from_db()  # the expiry as stored, which the refusal names
    return Minter(web_process.url, token, raw)


@pytest.fixture
def unchanged(transactional_db: Any) -> Iterator[None]:
    """The test's refusals leave the token table and the audit log as they found them."""
    tokens, events = ApiToken.objects.count(), AuditEvent.objects.count()
    revoked = ApiToken.objects.filter(revoked_at__isnull=False).count()
    yield
    assert ApiToken.objects.count() == tokens
    assert ApiToken.objects.filter(revoked_at__isnull=False).count() == revoked
    assert AuditEvent.objects.count() == events


def iso(when: datetime) -> str:
    return when.isoformat()


@pytest.mark.parametrize("scopes, refused", [(["read", "manage"], "manage"), (["read", "predict"], "predict")])
def test_a_read_token_cannot_grant_a_scope_it_does_not_have(narrow: Minter, tomorrow: datetime, unchanged: None,
                                                            scopes: list[str], refused: str) -> None:
    status, body = narrow.mint(scopes=scopes, model_names=["iris"], expires_at=iso(tomorrow))
    assert status == 403
    assert body == {"detail": f"a token cannot grant the '{refused}' scope it does not have"}


@pytest.fixture
def admins_narrow(web_process: WebProcess, models: None, cast: dict[str, Any]) -> Minter:
    """A superuser's token with the `read` scope only."""
    token, raw = create_token(actor=SYSTEM, user=cast["admin"], name="admin-read", scopes=["read"])
    return Minter(web_process.url, token, raw)


def test_a_superusers_read_token_cannot_grant_the_admin_scope(admins_narrow: Minter, unchanged: None) -> None:
    status, body = admins_narrow.mint(scopes=["admin"])
    assert status == 403
    assert body == {"detail": "a token cannot grant the 'admin' scope it does not have"}


def test_a_token_limited_to_iris_cannot_mint_one_for_every_model(narrow: Minter, tomorrow: datetime,
                                                                 unchanged: None) -> None:
    status, body = narrow.mint(scopes=["read"], expires_at=iso(tomorrow))
    assert status == 403
    assert body == {"detail": "a token limited to models cannot create a token for every model"}


def test_a_token_limited_to_iris_cannot_mint_one_for_another_model(narrow: Minter, tomorrow: datetime,
                                                                   unchanged: None) -> None:
    status, body = narrow.mint(scopes=["read"], model_names=["iris", "wine"], expires_at=iso(tomorrow))
    assert status == 403
    assert body == {"detail": "a token cannot grant model 'wine' it is not limited to"}


def test_a_token_expiring_tomorrow_cannot_mint_one_that_never_expires(narrow: Minter, unchanged: None) -> None:
    status, body = narrow.mint(scopes=["read"], model_names=["iris"])
    assert status == 403
    assert body == {"detail": "a token that expires cannot create a token that never expires"}


def test_a_token_expiring_tomorrow_cannot_mint_one_that_outlives_it(narrow: Minter, tomorrow: datetime,
                                                                    unchanged: None) -> None:
    status, body = narrow.mint(scopes=["read"], model_names=["iris"], expires_at=iso(tomorrow + timedelta(days=1)))
    assert status == 403
    assert narrow.token.expires_at is not None
    assert body == {"detail": "a token cannot create a token that outlives it: expires_at must be at or "
                              f"before {narrow.token.expires_at.isoformat()}"}


def test_a_token_mints_one_as_narrow_as_itself_and_the_mint_is_audited_once(narrow: Minter,
                                                                            tomorrow: datetime) -> None:
    events = AuditEvent.objects.count()
    status, body = narrow.mint(scopes=["read"], model_names=["iris"], expires_at=iso(tomorrow - timedelta(hours=1)))
    assert status == 201, body
    assert body["scopes"] == ["read"] and body["model_names"] == ["iris"]
    assert AuditEvent.objects.count() == events + 1
    event = AuditEvent.objects.get(action="token.create", object_id=str(body["id"]))
    assert event.actor_token_name == "narrow"


def test_a_manage_token_may_grant_read_which_manage_implies(web_process: WebProcess, models: None,
                                                            cast: dict[str, Any]) -> None:
    _, raw = create_token(actor=SYSTEM, user=cast["engineer"], name="manager", scopes=["manage"])
    status, body = call(web_process.url, "POST", "/api/v1/tokens/", raw, {"name": "reader", "scopes": ["read"]})
    assert status == 201, body


@pytest.fixture
def someone_elses(models: None, cast: dict[str, Any]) -> ApiToken:
    token, _ = create_token(actor=SYSTEM, user=cast["viewer"], name="viewers", scopes=["read"])
    return token


def test_a_superusers_read_token_cannot_revoke_someone_elses_token(admins_narrow: Minter, someone_elses: ApiToken,
                                                                   unchanged: None) -> None:
    status, body = call(admins_narrow.base, "DELETE", f"/api/v1/tokens/{someone_elses.pk}/", admins_narrow.raw)
    # 404, not 403: to a token without the admin scope, other people's tokens do not exist.
    assert status == 404
    assert body == {"detail": f"token {someone_elses.pk} not found"}
    status, body = call(admins_narrow.base, "GET", "/api/v1/tokens/", admins_narrow.raw)
    assert status == 200
    assert [token["name"] for token in body["results"]] == ["admin-read"]


def test_a_superusers_admin_token_revokes_anyones_token_audited_once(web_process: WebProcess,
                                                                     cast: dict[str, Any],
                                                                     someone_elses: ApiToken) -> None:
    _, raw = create_token(actor=SYSTEM, user=cast["admin"], name="admin-all", scopes=["admin"])
    events = AuditEvent.objects.count()
    status, body = call(web_process.url, "DELETE", f"/api/v1/tokens/{someone_elses.pk}/", raw)
    assert status == 200 and body["revoked_at"], body
    assert AuditEvent.objects.count() == events + 1
    assert AuditEvent.objects.get(action="token.revoke").actor_token_name == "admin-all"
