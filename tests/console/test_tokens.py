"""API tokens: random, shown once, stored hashed, scoped, limited to models, expiring, revocable."""

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from console.audit import Actor
from console.errors import Forbidden, NotFound
from console.models import ApiToken, AuditEvent, hash_token
from console.services import create_token, revoke_token
from registry import services

pytestmark = pytest.mark.django_db


@pytest.fixture
def iris(teams: dict[str, Any], cast: dict[str, Any]) -> Any:
    services.create_model(actor=Actor(user=cast["engineer"]), name="wine", team=teams["ml"])
    return services.create_model(actor=Actor(user=cast["engineer"]), name="iris", team=teams["ml"])


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_a_token_is_shown_once_and_stored_only_as_its_hash(cast: dict[str, Any]) -> None:
    session = APIClient()
    session.force_login(cast["engineer"])
    response = session.post("/api/v1/tokens/", {"name": "ci", "scopes": ["read", "predict"]}, format="json")
    assert response.status_code == 201
    raw = response.json()["token"]
    assert raw.startswith("pdk_") and len(raw) > 40
    token = ApiToken.objects.get(name="ci")
    assert token.digest == hash_token(raw) and raw not in (token.digest, token.prefix)
    assert token.scopes == ["read", "predict"]
    listed = session.get("/api/v1/tokens/").json()["results"]
    assert "token" not in listed[0] and listed[0]["prefix"] == raw[:12]
    assert AuditEvent.objects.filter(action="token.create", object_id=str(token.pk)).exists()


def test_it_rejects_unknown_expired_and_revoked_tokens_with_401(cast: dict[str, Any], iris: Any) -> None:
    actor = Actor.system("tests")
    _, expired = create_token(actor=actor, user=cast["engineer"], name="old", scopes=["read"],
                              expires_at=timezone.now() + timedelta(seconds=1))
    ApiToken.objects.filter(name="old").update(expires_at=timezone.now() - timedelta(minutes=1))
    revoked_token, revoked = create_token(actor=actor, user=cast["engineer"], name="gone", scopes=["read"])
    revoke_token(actor=actor, token=revoked_token)
    cases = {
        "pdk_not-a-real-token": "invalid token",
        expired: "token expired",
        revoked: "token revoked",
    }
    for raw, message in cases.items():
        response = bearer(raw).get("/api/v1/models/")
        assert response.status_code == 401
        assert response.json() == {"detail": message}
        assert response["WWW-Authenticate"] == 'Bearer realm="paddock"'


def test_it_asks_for_credentials_and_refuses_a_malformed_header(db: Any) -> None:
    response = APIClient().get("/api/v1/models/")
    assert response.status_code == 401
    assert response.json() == {"detail": "authentication required: send 'Authorization: Bearer <token>'"}
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token abc")
    response = client.get("/api/v1/models/")
    assert response.status_code == 401
    assert response.json() == {"detail": "malformed Authorization header: expected 'Bearer <token>'"}


def test_a_token_without_the_scope_gets_403(client_for: Any, iris: Any) -> None:
    reader = client_for("engineer", "read")
    assert reader.get("/api/v1/models/iris/").status_code == 200
    response = reader.patch("/api/v1/models/iris/", {"tags": ["x"]}, format="json")
    assert response.status_code == 403
    assert response.json() == {"detail": "token lacks the 'manage' scope"}
    predictor = client_for("engineer", "predict")
    response = predictor.get("/api/v1/models/")
    assert response.status_code == 403
    assert response.json() == {"detail": "token lacks the 'read' scope"}


def test_a_token_limited_to_named_models_sees_only_those(client_for: Any, iris: Any) -> None:
    limited = client_for("engineer", "read", model_names=["iris"])
    assert [m["name"] for m in limited.get("/api/v1/models/").json()["results"]] == ["iris"]
    response = limited.get("/api/v1/models/wine/")
    assert response.status_code == 404
    assert response.json() == {"detail": "model 'wine' not found"}


def test_last_use_is_recorded(client_for: Any, iris: Any) -> None:
    client = client_for("viewer", "read")
    assert ApiToken.objects.get(name="viewer-test").last_used_at is None
    client.get("/api/v1/models/")
    assert ApiToken.objects.get(name="viewer-test").last_used_at is not None


def test_a_token_cannot_mint_a_stronger_token(client_for: Any) -> None:
    response = client_for("engineer", "read").post("/api/v1/tokens/", {"name": "x", "scopes": ["manage"]},
                                                   format="json")
    assert response.status_code == 403
    assert response.json() == {"detail": "a token cannot grant the 'manage' scope it does not have"}
    response = client_for("engineer", "read", "manage").post("/api/v1/tokens/", {"name": "x", "scopes": ["admin"]},
                                                             format="json")
    assert response.status_code == 403
    assert response.json() == {"detail": "only admins can hold tokens with the 'admin' scope"}


def test_the_minting_rule_lives_in_the_service_for_any_caller_with_a_token(cast: dict[str, Any], iris: Any) -> None:
    minting, _ = create_token(actor=Actor.system("tests"), user=cast["engineer"], name="narrow", scopes=["read"],
                              model_names=["iris"], expires_at=timezone.now() + timedelta(days=1))
    actor = Actor(user=cast["engineer"], token=minting)
    refusals: dict[str, dict[str, Any]] = {
        "a token limited to models cannot create a token for every model": {},
        "a token cannot grant model 'wine' it is not limited to": {"model_names": ["wine"]},
        "a token that expires cannot create a token that never expires": {"model_names": ["iris"]},
    }
    for message, options in refusals.items():
        with pytest.raises(Forbidden) as refused:
            create_token(actor=actor, user=cast["engineer"], name="x", scopes=["read"], **options)
        assert refused.value.message == message
    assert list(ApiToken.objects.values_list("name", flat=True)) == ["narrow"]


def test_the_token_page_in_a_session_mints_without_a_token_to_stay_within(cast: dict[str, Any]) -> None:
    client = Client()
    client.force_login(cast["engineer"])
    response = client.post("/tokens/", {"name": "wide", "scopes": ["read", "manage"]})
    assert response.status_code == 200
    token = ApiToken.objects.get(name="wide")
    assert token.scopes == ["read", "manage"] and token.model_names == [] and token.expires_at is None


def test_a_session_admin_revokes_anyones_token_and_a_system_actor_too(cast: dict[str, Any]) -> None:
    token, _ = create_token(actor=Actor.system("tests"), user=cast["viewer"], name="theirs", scopes=["read"])
    session = APIClient()
    session.force_login(cast["admin"])
    response = session.delete(f"/api/v1/tokens/{token.pk}/")
    assert response.status_code == 200 and response.json()["revoked_at"]
    other, _ = create_token(actor=Actor.system("tests"), user=cast["viewer"], name="other", scopes=["read"])
    assert revoke_token(actor=Actor.system("tests"), token=other).revoked_at is not None


def test_the_service_refuses_to_revoke_someone_elses_token_as_not_found(cast: dict[str, Any]) -> None:
    token, _ = create_token(actor=Actor.system("tests"), user=cast["viewer"], name="theirs", scopes=["read"])
    admin_reader, _ = create_token(actor=Actor.system("tests"), user=cast["admin"], name="r", scopes=["read"])
    for actor in (Actor(user=cast["engineer"]), Actor(user=cast["admin"], token=admin_reader)):
        with pytest.raises(NotFound) as refused:
            revoke_token(actor=actor, token=token)
        assert refused.value.message == f"token {token.pk} not found"
    token.refresh_from_db()
    assert token.revoked_at is None
    assert not AuditEvent.objects.filter(action="token.revoke").exists()


def test_revoking_over_the_api_is_audited_and_takes_effect(cast: dict[str, Any]) -> None:
    token, raw = create_token(actor=Actor.system("tests"), user=cast["viewer"], name="mine", scopes=["read"])
    client = bearer(raw)
    response = client.delete(f"/api/v1/tokens/{token.pk}/")
    assert response.status_code == 200 and response.json()["revoked_at"]
    assert client.get("/api/v1/tokens/").json() == {"detail": "token revoked"}
    event = AuditEvent.objects.get(action="token.revoke")
    assert event.before is not None and event.after is not None
    assert event.before["revoked_at"] is None and event.after["revoked_at"]
    assert event.actor_token_name == "mine"


def test_someone_elses_token_is_not_found(client_for: Any, cast: dict[str, Any]) -> None:
    token, _ = create_token(actor=Actor.system("tests"), user=cast["viewer"], name="theirs", scopes=["read"])
    response = client_for("engineer", "read").delete(f"/api/v1/tokens/{token.pk}/")
    assert response.status_code == 404
    assert response.json() == {"detail": f"token {token.pk} not found"}


def test_create_token_command_prints_a_working_token(cast: dict[str, Any], iris: Any) -> None:
    out = StringIO()
    call_command("create_token", "engineer", "--scope", "read", "--scope", "predict", "--model", "iris", stdout=out)
    raw = out.getvalue().strip()
    response = bearer(raw).get("/api/v1/models/")
    assert response.status_code == 200
    assert [m["name"] for m in response.json()["results"]] == ["iris"]
    token = ApiToken.objects.get(digest=hash_token(raw))
    assert token.scopes == ["read", "predict"] and token.model_names == ["iris"]


def test_a_limit_past_64_bits_reads_as_the_largest_page_and_a_nul_filter_is_refused(client_for: Any) -> None:
    """Both were 500s (found by tests/security/test_api_fuzz.py): the limit reached PostgreSQL's
    64-bit LIMIT, the NUL a text column."""
    admin = client_for("admin", "read", "admin")
    page = admin.get("/api/v1/tokens/", {"limit": "36893488147419103232"})
    assert page.status_code == 200 and [t["name"] for t in page.json()["results"]] == ["admin-test"]
    nul = admin.get("/api/v1/tokens/", {"user": "admin\x00"})
    assert nul.status_code == 400 and nul.json() == {"detail": "'user' must not contain NUL characters"}
