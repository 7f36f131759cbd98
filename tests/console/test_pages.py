"""Console pages rendered by Django (the browser journey itself is in tests/e2e)."""

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from console.audit import Actor
from registry import services
from tests import models as built

pytestmark = pytest.mark.django_db


@pytest.fixture
def iris(teams: dict[str, Any], cast: dict[str, Any]) -> Any:
    model = services.create_model(actor=Actor(user=cast["engineer"]), name="iris", team=teams["ml"],
                                  description="Flowers", tags=["tabular"])
    services.create_model(actor=Actor(user=cast["engineer"]), name="wine", team=teams["ml"])
    return model


def test_pages_need_a_login(db: Any) -> None:
    response = Client().get("/models/")
    assert response.status_code == 302 and response["Location"] == "/login/?next=/models/"


def test_logging_in_lands_on_the_model_list(cast: dict[str, Any], iris: Any) -> None:
    client = Client()
    response = client.post("/login/", {"username": "engineer", "password": "correct-horse-battery"}, follow=True)
    assert response.redirect_chain[-1][0] == "/models/"
    assert b"iris" in response.content and b"wine" in response.content


def test_search_returns_only_the_table_fragment_to_htmx(browser_as: Any, iris: Any) -> None:
    page = browser_as("engineer").get("/models/", {"q": "flow"}, HTTP_HX_REQUEST="true")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<html" not in html and ">iris</a>" in html and ">wine</a>" not in html


def test_the_model_page_shows_versions_signature_report_and_aliases(browser_as: Any, iris: Any,
                                                                    cast: dict[str, Any]) -> None:
    upload = SimpleUploadedFile("m.onnx", built.mlp_onnx())
    version, _ = services.register_version(actor=Actor(user=cast["engineer"]), model=iris, upload=upload)
    services.set_alias(actor=Actor(user=cast["engineer"]), model=iris, name="champion", version=version)
    services.finish_validation(actor=Actor.system("worker"), version_id=version.pk, report={
        "runtime": "onnxruntime", "runtime_version": "1", "provider": "CPUExecutionProvider", "load_ms": 1.5,
        "runs": [{"batch_size": 1, "latency_ms": 0.1, "output_shapes": {"probs": [1, 3]}}],
    })
    html = browser_as("viewer").get("/models/iris/").content.decode()
    assert "v1" in html and "champion → v1" in html
    assert "<code>x</code>" in html and "[-1, 8]" in html and "FP32" in html
    assert "CPUExecutionProvider" in html and "status-ready" in html
    assert "Upload a version" not in html  # a viewer cannot upload


def test_outsiders_get_404_for_the_model_page(browser_as: Any, iris: Any) -> None:
    assert browser_as("outsider").get("/models/iris/").status_code == 404


def test_an_htmx_upload_answers_with_a_fragment_that_polls_validation(browser_as: Any, iris: Any) -> None:
    client = browser_as("engineer")
    response = client.post("/models/iris/upload/", {"artifact": SimpleUploadedFile("m.onnx", built.mlp_onnx())},
                           HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Uploaded as" in html and 'hx-get="/models/iris/versions/1/status/?detail=1"' in html
    refused = client.post("/models/iris/upload/", {"artifact": SimpleUploadedFile("m.onnx", b"nope")},
                          HTTP_HX_REQUEST="true")
    assert refused.status_code == 400
    assert "not a model: the file is neither ONNX nor a TorchScript archive" in refused.content.decode()


def test_the_audit_page_is_for_admins_only(browser_as: Any, iris: Any) -> None:
    refused = browser_as("engineer").get("/audit/")
    assert refused.status_code == 403
    assert '<p class="error" role="alert">only an admin can read the audit log</p>' in refused.content.decode()
    html = browser_as("admin").get("/audit/", {"action": "model."}).content.decode()
    assert "model.create" in html and "iris" in html


def test_tokens_page_shows_a_new_token_once(browser_as: Any) -> None:
    client = browser_as("engineer")
    created = client.post("/tokens/", {"name": "laptop", "scopes": ["read", "predict"]}).content.decode()
    assert 'id="new-token">pdk_' in created
    assert 'id="new-token"' not in client.get("/tokens/").content.decode()


def test_a_boosted_link_or_a_history_restore_gets_the_whole_page(browser_as: Any, iris: Any) -> None:
    client = browser_as("engineer")
    for extra in ({"HX-Boosted": "true"}, {"HX-History-Restore-Request": "true"}):
        page = client.get("/models/", {"q": "flow"}, headers={"HX-Request": "true", **extra})
        assert page.status_code == 200 and "<html" in page.content.decode()
        assert "HX-Request" in page["Vary"]  # caches keep the page and the fragment apart
