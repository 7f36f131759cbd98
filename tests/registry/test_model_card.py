"""A version's model card: read and changed over the API and in the console, each field checked
with a message naming it, each change audited with only what changed."""

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from console.audit import Actor
from console.models import AuditEvent
from registry import cards, services
from registry.models import ImmutableFieldError, ModelVersion, RegisteredModel
from tests import models as built

pytestmark = pytest.mark.django_db

DIGEST = "ab" * 32
CARD = "/api/v1/models/iris/versions/{}/card"


@pytest.fixture
def model(teams: dict[str, Any], cast: dict[str, Any]) -> Any:
    """iris with versions 1, 2 and 3."""
    iris = services.create_model(actor=Actor(user=cast["engineer"]), name="iris", team=teams["ml"])
    for seed in (1, 2, 3):
        services.register_version(actor=Actor.system("tests"), model=iris,
                                  upload=SimpleUploadedFile("m.onnx", built.mlp_onnx(seed=seed)))
    return iris


def card_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="version.card_updated").order_by("id"))


def patch(client: Any, number: int, payload: Any) -> Any:
    return client.patch(CARD.format(number), payload, format="json")


def test_an_engineer_writes_the_whole_card_and_reads_it_back(client_for: Any, model: Any) -> None:
    engineer = client_for("engineer", "read", "manage")
    response = patch(engineer, 3, {
        "card_markdown": "# Iris v3\n\nTrained on **more** flowers.", "metrics": {"accuracy": 0.93, "epochs": 12},
        "source_run_url": "https://mlflow.example.com/#/runs/42", "parent_version": 2, "dataset_sha256": DIGEST.upper(),
    })
    assert response.status_code == 200, response.content
    body = response.json()
    assert body == {
        "model": "iris", "number": 3, "card_markdown": "# Iris v3\n\nTrained on **more** flowers.",
        "html": "<h1>Iris v3</h1>\n<p>Trained on <strong>more</strong> flowers.</p>\n",
        "metrics": {"accuracy": 0.93, "epochs": 12.0}, "source_run_url": "https://mlflow.example.com/#/runs/42",
        "parent_version": 2, "dataset_sha256": DIGEST,
    }
    assert client_for("viewer", "read").get(CARD.format(3) + "/").json() == body
    version = model.versions.get(number=3)
    assert version.parent_version == model.versions.get(number=2)
    assert version.metrics == {"accuracy": 0.93, "epochs": 12}
    [event] = card_events()
    assert (event.actor_username, event.object_id) == ("engineer", str(version.pk))
    assert event.before == {"card_markdown": "", "metrics": {}, "source_run_url": "", "parent_version": None,
                            "dataset_sha256": ""}
    assert event.after is not None and event.after["parent_version"] == 2 and event.after["dataset_sha256"] == DIGEST


def test_a_change_audits_only_the_fields_that_changed(client_for: Any, model: Any) -> None:
    engineer = client_for("engineer", "read", "manage")
    patch(engineer, 2, {"card_markdown": "v2", "metrics": {"f1": 0.8}})
    response = patch(engineer, 2, {"card_markdown": "v2", "metrics": {"f1": 0.85}})
    assert response.status_code == 200
    first, second = card_events()
    assert (second.before, second.after) == ({"metrics": {"f1": 0.8}}, {"metrics": {"f1": 0.85}})
    assert model.versions.get(number=2).card_markdown == "v2"  # an omitted field stays; the same value is no change


def test_sending_what_is_already_there_writes_nothing(client_for: Any, model: Any) -> None:
    engineer = client_for("engineer", "read", "manage")
    patch(engineer, 1, {"metrics": {"auc": 0.9}})
    assert patch(engineer, 1, {"metrics": {"auc": 0.9}, "card_markdown": ""}).status_code == 200
    assert len(card_events()) == 1


def test_null_or_empty_clears_a_field(client_for: Any, model: Any) -> None:
    engineer = client_for("engineer", "read", "manage")
    patch(engineer, 3, {"parent_version": 1, "source_run_url": "http://runs.example/1", "dataset_sha256": DIGEST})
    response = patch(engineer, 3, {"parent_version": None, "source_run_url": "", "dataset_sha256": None})
    assert response.status_code == 200
    assert (response.json()["parent_version"], response.json()["source_run_url"]) == (None, "")
    assert card_events()[-1].after == {"parent_version": None, "source_run_url": "", "dataset_sha256": ""}


@pytest.mark.parametrize(("payload", "message"), [
    ({"metrics": {"accuracy": "high"}}, "'metrics': the value of 'accuracy' must be a finite number"),
    ({"metrics": {"accuracy": True}}, "'metrics': the value of 'accuracy' must be a finite number"),
    ({"metrics": {"big": 10**400}}, "'metrics': the value of 'big' must be a finite number"),
    ({"metrics": {"nested": {"a": 1}}}, "'metrics': the value of 'nested' must be a finite number"),
    ({"metrics": [0.9]}, "'metrics' must be an object of metric names and numbers, e.g. {\"accuracy\": 0.93}"),
    ({"metrics": {" ": 1}}, "'metrics': each name must be 1 to 64 characters, without NUL"),
    ({"metrics": {f"m{i}": i for i in range(101)}}, "'metrics' holds 101 metrics; at most 100 are allowed"),
    ({"source_run_url": "ftp://runs.example.com/42"}, "'source_run_url' must be an http:// or https:// URL"),
    ({"source_run_url": "javascript:alert(1)"}, "'source_run_url' must be an http:// or https:// URL"),
    ({"source_run_url": "https://x.example/" + "a" * 500},
     "'source_run_url' must be text of at most 500 characters, without NUL"),
    ({"dataset_sha256": "abc123"}, "'dataset_sha256' must be 64 hexadecimal characters (a sha256 digest)"),
    ({"dataset_sha256": "g" * 64}, "'dataset_sha256' must be 64 hexadecimal characters (a sha256 digest)"),
    ({"parent_version": 2}, "'parent_version' must be another version: 2 is this version"),
    ({"parent_version": 3}, "'parent_version' must be older than version 2: 3 is newer"),
    ({"parent_version": 0}, "'parent_version': model 'iris' has no version 0"),
    ({"parent_version": "1"}, "'parent_version' must be a version number of this model, or null"),
    ({"card_markdown": "a\x00b"}, "'card_markdown' must be text of at most 100000 characters, without NUL"),
    ({"card_markdown": 5}, "'card_markdown' must be text of at most 100000 characters, without NUL"),
    ({"colour": "red"}, "unknown card field 'colour': a card has card_markdown, metrics, source_run_url, "
                        "parent_version, dataset_sha256"),
    ([1, 2], "send the card as a JSON object with any of: card_markdown, metrics, source_run_url, "
             "parent_version, dataset_sha256"),
], ids=lambda value: str(value)[:40])
def test_a_field_that_does_not_fit_is_400_naming_it_and_nothing_changes(
        client_for: Any, model: Any, payload: Any, message: str) -> None:
    engineer = client_for("engineer", "read", "manage")
    response = patch(engineer, 2, payload)
    assert response.status_code == 400
    assert response.json() == {"detail": message}
    assert card_events() == []
    assert model.versions.get(number=2).card_markdown == ""


def test_a_parent_is_looked_up_in_this_model_only(client_for: Any, model: Any, teams: dict[str, Any],
                                                  cast: dict[str, Any]) -> None:
    wine = services.create_model(actor=Actor(user=cast["engineer"]), name="wine", team=teams["ml"])
    services.register_version(actor=Actor.system("tests"), model=wine,
                              upload=SimpleUploadedFile("w.onnx", built.mlp_onnx(seed=9)))
    response = client_for("engineer", "read", "manage").patch("/api/v1/models/wine/versions/1/card",
                                                               {"parent_version": 1}, format="json")
    assert response.json() == {"detail": "'parent_version' must be another version: 1 is this version"}


def test_viewers_read_tokens_and_outsiders_cannot_change_a_card(client_for: Any, model: Any) -> None:
    viewer = patch(client_for("viewer", "read", "manage"), 1, {"card_markdown": "mine"})
    assert viewer.status_code == 403
    assert viewer.json() == {"detail": "the engineer role in team 'ml' is required to change this model"}
    reader = patch(client_for("engineer", "read"), 1, {"card_markdown": "mine"})
    assert (reader.status_code, reader.json()) == (403, {"detail": "token lacks the 'manage' scope"})
    outsider = patch(client_for("outsider", "read", "manage"), 1, {"card_markdown": "mine"})
    assert (outsider.status_code, outsider.json()) == (404, {"detail": "model 'iris' not found"})
    unknown = patch(client_for("engineer", "read", "manage"), 9, {"card_markdown": "mine"})
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "model 'iris' has no version 9"})
    assert card_events() == [] and model.versions.get(number=1).card_markdown == ""


def test_the_card_is_mutable_but_the_artifact_is_not(model: Any) -> None:
    version = model.versions.get(number=1)
    version.card_markdown = "fine"
    version.save(update_fields=["card_markdown"])
    version.sha256 = "0" * 64
    with pytest.raises(ImmutableFieldError, match="a model version is immutable"):
        version.save(update_fields=["sha256", "card_markdown"])


def test_deleting_a_model_whose_versions_name_parents_removes_them_all(model: Any, cast: dict[str, Any]) -> None:
    actor = Actor(user=cast["engineer"])
    cards.update_version_card(actor=actor, version=model.versions.get(number=2), changes={"parent_version": 1})
    cards.update_version_card(actor=actor, version=model.versions.get(number=3), changes={"parent_version": 2})
    services.delete_model(actor=Actor(user=cast["admin"]), model=model)
    assert not RegisteredModel.objects.filter(name="iris").exists() and not ModelVersion.objects.exists()


FORM = {"card_markdown": "## Notes\n\n- trained *longer*", "metrics": "accuracy: 0.93\n\nepochs: 12\n",
        "source_run_url": "https://runs.example.com/7", "parent_version": "1", "dataset_sha256": DIGEST}


def test_an_engineer_edits_the_card_in_the_console_with_htmx(browser_as: Any, model: Any) -> None:
    engineer = browser_as("engineer")
    page = engineer.get("/models/iris/versions/2/").content.decode()
    assert 'id="card-form"' in page and "No card yet." in page
    response = engineer.post("/models/iris/versions/2/card/", FORM, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html and "Card saved." in html
    assert "<h2>Notes</h2>" in html and "<em>longer</em>" in html
    assert '<a href="/models/iris/versions/1/">v1</a>' in html
    version = model.versions.get(number=2)
    assert version.metrics == {"accuracy": 0.93, "epochs": 12} and version.dataset_sha256 == DIGEST
    assert card_events()[0].actor_username == "engineer"
    model_page = engineer.get("/models/iris/").content.decode()
    assert 'href="/models/iris/versions/2/">Model card</a>' in model_page
    assert 'href="/models/iris/versions/1/">Model card (none yet)</a>' in model_page


def test_a_console_post_without_htmx_goes_back_to_the_version_page(browser_as: Any, model: Any) -> None:
    response = browser_as("engineer").post("/models/iris/versions/2/card/", FORM)
    assert response.status_code == 302 and response["Location"] == "/models/iris/versions/2/"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("metrics", "accuracy = high", "&#x27;metrics&#x27; line 1 must be &#x27;name: number&#x27;, e.g. "
                                   "&#x27;accuracy: 0.93&#x27;"),
    ("metrics", "loss: nan", "&#x27;metrics&#x27;: the value of &#x27;loss&#x27; must be a finite number"),
    ("parent_version", "x", "&#x27;parent_version&#x27; must be a version number of this model"),
    ("source_run_url", "file:///etc/passwd", "&#x27;source_run_url&#x27; must be an http:// or https:// URL"),
], ids=["metric-line", "nan", "parent", "url"])
def test_a_refused_console_edit_keeps_the_form_and_says_why(browser_as: Any, model: Any, field: str, value: str,
                                                           message: str) -> None:
    response = browser_as("engineer").post("/models/iris/versions/2/card/", {**FORM, field: value},
                                           HTTP_HX_REQUEST="true")
    assert response.status_code == 400
    html = response.content.decode()
    assert f'<p class="error" role="alert">{message}</p>' in html
    assert "## Notes" in html  # what was typed comes back in the form
    assert card_events() == []


def test_a_viewer_sees_the_card_without_the_form_and_cannot_post(browser_as: Any, model: Any,
                                                                 cast: dict[str, Any]) -> None:
    cards.update_version_card(actor=Actor(user=cast["engineer"]), version=model.versions.get(number=1),
                                 changes={"card_markdown": "Hello **card**", "metrics": {"auc": 0.91}})
    viewer = browser_as("viewer")
    page = viewer.get("/models/iris/versions/1/").content.decode()
    assert "Hello <strong>card</strong>" in page and "<code>auc</code> 0.91" in page and 'id="card-form"' not in page
    refused = viewer.post("/models/iris/versions/1/card/", FORM, HTTP_HX_REQUEST="true")
    assert refused.status_code == 403
    assert "the engineer role in team &#x27;ml&#x27; is required to change this model" in refused.content.decode()
    assert len(card_events()) == 1
