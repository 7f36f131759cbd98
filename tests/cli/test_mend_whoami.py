"""`paddock whoami` against the real web server: who the token belongs to, its scopes and expiry,
the teams and roles; a token that no longer holds is refused in the server's words."""

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from console.models import ApiToken
from tests.cli.conftest import Paddock


def test_whoami_names_the_person_the_token_and_the_teams(engineer: Paddock) -> None:
    done = engineer("whoami")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == ["engineer", "token   engineer-cli: read, manage; never expires",
                                        "team    ml (engineer)"]
    as_json = engineer("whoami", "--json")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout) == {
        "username": "engineer", "is_staff": False, "teams": [{"name": "ml", "role": "engineer"}],
        "token": {"name": "engineer-cli", "scopes": ["read", "manage"], "expires_at": None}}


def test_whoami_says_staff_expiry_and_no_team(paddock: Paddock, web_server: str,
                                              token_of: Callable[..., str]) -> None:
    admin = replace(paddock, env={"PADDOCK_URL": web_server, "PADDOCK_TOKEN": token_of("admin", "admin")})
    ApiToken.objects.filter(name="admin-cli").update(expires_at=datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC))
    done = admin("whoami")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == ["admin (staff)", "token   admin-cli: admin; expires 2099-01-02 03:04:05 UTC",
                                        "team    none"]


def test_whoami_with_an_expired_token_says_so(engineer: Paddock, cast: dict[str, Any]) -> None:
    ApiToken.objects.filter(name="engineer-cli").update(expires_at=timezone.now() - timedelta(minutes=1))
    done = engineer("whoami")
    assert (done.returncode, done.stdout, done.stderr) == (1, "", "error: token expired\n")
    as_json = engineer("whoami", "--json")
    assert (as_json.returncode, json.loads(as_json.stdout)) == (1, {"error": "token expired", "status": 401})
