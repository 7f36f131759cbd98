"""Registered models and aliases over the management API; who sees and changes what."""

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from console.models import AuditEvent
from registry.models import Alias, ModelVersion
from tests import models as built

pytestmark = pytest.mark.django_db


@pytest.fixture
def engineer(client_for: Any) -> Any:
    client = client_for("engineer", "read", "manage")
    client.post("/api/v1/models/", {"name": "iris", "team": "ml", "description": "Flowers", "tags": ["tabular"]},
                format="json")
    return client


def add_version(client: Any, seed: int) -> int:
    response = client.post("/api/v1/models/iris/versions/",
                           {"artifact": SimpleUploadedFile("m.onnx", built.mlp_onnx(seed=seed))}, format="multipart")
    assert response.status_code == 201
    return int(response.json()["number"])


def test_an_engineer_creates_a_model_in_their_team(engineer: Any) -> None:
    body = engineer.get("/api/v1/models/iris/").json()
    assert body["name"] == "iris" and body["team"] == "ml" and body["owner"] == "engineer"
    assert body["tags"] == ["tabular"] and body["latest_version"] is None and body["aliases"] == {}


@pytest.mark.parametrize(("who", "team", "status", "detail"), [
    ("viewer", "ml", 403, "the engineer role in team 'ml' is required to add models to it"),
    ("engineer", "other", 404, "team 'other' not found"),
    ("engineer", "nope", 404, "team 'nope' not found"),
])
def test_only_engineers_of_the_team_create_models(client_for: Any, who: str, team: str, status: int,
                                                  detail: str) -> None:
    response = client_for(who, "read", "manage").post("/api/v1/models/", {"name": "x", "team": team}, format="json")
    assert response.status_code == status
    assert response.json() == {"detail": detail}


def test_it_refuses_names_that_are_not_slugs(engineer: Any) -> None:
    response = engineer.post("/api/v1/models/", {"name": "Bad Name!", "team": "ml"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"detail": "invalid model name 'Bad Name!': use 1-64 lowercase letters, digits, "
                                         "'-' or '_', starting and ending with a letter or digit"}


def test_outsiders_get_404_not_403(engineer: Any, client_for: Any) -> None:
    outsider = client_for("outsider", "read", "manage")
    for method, url in [("get", "/api/v1/models/iris/"), ("get", "/api/v1/models/iris/versions/"),
                        ("patch", "/api/v1/models/iris/"), ("put", "/api/v1/models/iris/aliases/champion")]:
        response = getattr(outsider, method)(url, {}, format="json")
        assert response.status_code == 404, (method, url)
        assert response.json() == {"detail": "model 'iris' not found"}
    assert outsider.get("/api/v1/models/").json()["results"] == []


def test_viewers_read_but_do_not_change(engineer: Any, client_for: Any) -> None:
    viewer = client_for("viewer", "read", "manage")
    assert viewer.get("/api/v1/models/iris/").status_code == 200
    response = viewer.patch("/api/v1/models/iris/", {"tags": []}, format="json")
    assert response.status_code == 403
    assert response.json() == {"detail": "the engineer role in team 'ml' is required to change this model"}


def test_search_by_text_and_tag(engineer: Any) -> None:
    engineer.post("/api/v1/models/", {"name": "wine", "team": "ml", "tags": ["tabular", "prod"]}, format="json")
    engineer.post("/api/v1/models/", {"name": "resnet", "team": "ml", "description": "images"}, format="json")

    def names(**params: str) -> list[str]:
        return [m["name"] for m in engineer.get("/api/v1/models/", params).json()["results"]]

    assert names() == ["iris", "resnet", "wine"]
    assert names(q="flow") == ["iris"]
    assert names(q="image") == ["resnet"]
    assert names(tag="tabular") == ["iris", "wine"]
    assert names(tag="prod") == ["wine"]


def test_aliases_point_at_one_version_and_move_atomically(engineer: Any) -> None:
    first, second = add_version(engineer, 1), add_version(engineer, 2)
    response = engineer.put("/api/v1/models/iris/aliases/champion", {"version": first}, format="json")
    assert response.status_code == 200 and response.json()["version"] == first
    engineer.put("/api/v1/models/iris/aliases/challenger", {"version": second}, format="json")
    moved = engineer.put("/api/v1/models/iris/aliases/champion", {"version": second}, format="json")
    assert moved.json()["version"] == second
    assert Alias.objects.filter(name="champion").count() == 1
    assert engineer.get("/api/v1/models/iris/").json()["aliases"] == {"challenger": second, "champion": second}
    event = AuditEvent.objects.filter(action="alias.set").latest("id")
    assert event.before == {"alias": "champion", "version": first}
    assert event.after == {"alias": "champion", "version": second}
    assert engineer.get("/api/v1/models/iris/aliases/champion").json()["version"] == second
    assert engineer.delete("/api/v1/models/iris/aliases/challenger").status_code == 204
    assert engineer.get("/api/v1/models/iris/aliases/challenger").json() == {
        "detail": "model 'iris' has no alias 'challenger'"}


def test_aliases_refuse_unknown_and_failed_versions(engineer: Any) -> None:
    response = engineer.put("/api/v1/models/iris/aliases/champion", {"version": 7}, format="json")
    assert response.status_code == 404
    assert response.json() == {"detail": "model 'iris' has no version 7"}
    number = add_version(engineer, 1)
    ModelVersion.objects.filter(number=number).update(status="failed")
    response = engineer.put("/api/v1/models/iris/aliases/champion", {"version": number}, format="json")
    assert response.status_code == 409
    assert response.json() == {"detail": f"version {number} failed validation and cannot carry an alias"}


def test_the_openapi_schema_and_its_docs_page_are_served(db: Any) -> None:
    from django.test import Client

    client = Client()
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/models/{name}/versions/" in paths and "/api/v1/audit/" in paths
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content


def test_a_huge_limit_and_nul_in_names_or_filters_are_answered_without_a_500(engineer: Any) -> None:
    """Each was a 500 (tests/security/test_api_fuzz.py): PostgreSQL's LIMIT is 64-bit and no
    PostgreSQL text holds NUL. A name with NUL names no model or alias: 404, as any unknown one."""
    page = engineer.get("/api/v1/models/", {"limit": "36893488147419103232"})
    assert page.status_code == 200 and [m["name"] for m in page.json()["results"]] == ["iris"]
    for param in ("q", "tag"):
        refused = engineer.get("/api/v1/models/", {param: "tab\x00ular"})
        assert refused.status_code == 400
        assert refused.json() == {"detail": f"'{param}' must not contain NUL characters"}
    for method, url, detail in [
        ("get", "/api/v1/models/ir%00is/", "model 'ir\x00is' not found"),
        ("get", "/api/v1/deployments/ir%00is/", "model 'ir\x00is' not found"),
        ("get", "/api/v1/models/iris/aliases/cham%00pion/", "model 'iris' has no alias 'cham\x00pion'"),
        ("delete", "/api/v1/models/iris/aliases/cham%00pion/", "model 'iris' has no alias 'cham\x00pion'"),
    ]:
        response = getattr(engineer, method)(url)
        assert (response.status_code, response.json()) == (404, {"detail": detail}), url
