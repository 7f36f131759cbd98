"""`GET /api/v1/whoami/`: who the caller is, with a token or in a browser session; refused, with
the API's usual 401 bodies, without credentials or with a token that no longer holds."""

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from console.api.serializers import TokenSerializer
from console.audit import Actor
from console.models import ApiToken, Membership
from console.services import create_token, revoke_token

pytestmark = pytest.mark.django_db
URL = "/api/v1/whoami/"


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_a_token_answers_its_holder_their_teams_and_itself(cast: dict[str, Any], teams: dict[str, Any]) -> None:
    Membership.objects.create(team=teams["other"], user=cast["engineer"], role="viewer")
    expires = timezone.now() + timedelta(days=30)
    token, raw = create_token(actor=Actor.system("tests"), user=cast["engineer"], name="ci", scopes=["read", "predict"],
                              expires_at=expires)
    answer = bearer(raw).get(URL)
    assert answer.status_code == 200
    assert answer.json() == {
        "username": "engineer", "is_staff": False,
        "teams": [{"name": "ml", "role": "engineer"}, {"name": "other", "role": "viewer"}],  # by name
        "token": {"name": "ci", "scopes": ["read", "predict"],
                  "expires_at": TokenSerializer(token).data["expires_at"]},
    }
    assert answer.json()["token"]["expires_at"] is not None


def test_a_token_without_expiry_says_null_and_an_admin_is_staff(client_for: Any) -> None:
    admin = client_for("admin", "admin").get(URL)
    assert admin.status_code == 200
    assert admin.json() == {"username": "admin", "is_staff": True, "teams": [],
                            "token": {"name": "admin-test", "scopes": ["admin"], "expires_at": None}}
    viewer = client_for("viewer", "read").get(URL).json()
    assert viewer["teams"] == [{"name": "ml", "role": "viewer"}] and viewer["token"]["scopes"] == ["read"]


def test_a_browser_session_answers_with_no_token(cast: dict[str, Any]) -> None:
    session = Client()
    session.force_login(cast["outsider"])
    answer = session.get(URL)
    assert answer.status_code == 200
    assert answer.json() == {"username": "outsider", "is_staff": False,
                             "teams": [{"name": "other", "role": "engineer"}], "token": None}


def test_without_credentials_it_is_the_api_s_401(db: Any) -> None:
    answer = APIClient().get(URL)
    assert answer.status_code == 401
    assert answer.json() == {"detail": "authentication required: send 'Authorization: Bearer <token>'"}
    assert answer["WWW-Authenticate"] == 'Bearer realm="paddock"'


def test_an_expired_revoked_or_unknown_token_is_a_401_saying_which(cast: dict[str, Any]) -> None:
    actor = Actor.system("tests")
    _, expired = create_token(actor=actor, user=cast["engineer"], name="old", scopes=["read"],
                              expires_at=timezone.now() + timedelta(seconds=1))
    ApiToken.objects.filter(name="old").update(expires_at=timezone.now() - timedelta(minutes=1))
    gone, revoked = create_token(actor=actor, user=cast["engineer"], name="gone", scopes=["read"])
    revoke_token(actor=actor, token=gone)
    for raw, message in {expired: "token expired", revoked: "token revoked",
                         "pdk_" + "x" * 43: "invalid token"}.items():
        answer = bearer(raw).get(URL)
        assert answer.status_code == 401
        assert answer.json() == {"detail": message}
        assert answer["WWW-Authenticate"] == 'Bearer realm="paddock"'


def test_any_valid_token_may_ask_a_predict_only_one_too(client_for: Any) -> None:
    answer = client_for("engineer", "predict").get(URL)
    assert answer.status_code == 200 and answer.json()["token"]["scopes"] == ["predict"]
    # elsewhere a predict-only token still cannot read the API
    refused = client_for("engineer", "predict").get("/api/v1/models/")
    assert refused.status_code == 403 and refused.json() == {"detail": "token lacks the 'read' scope"}


def test_the_schema_describes_it(db: Any) -> None:
    schema = Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert "get" in schema["paths"]["/api/v1/whoami/"]
    assert set(schema["components"]["schemas"]["Whoami"]["properties"]) == {"username", "is_staff", "teams", "token"}
