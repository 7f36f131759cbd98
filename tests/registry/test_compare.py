"""The comparison page: two versions side by side, their signature differences marked, their
validation latencies, live and kept figures, shadow agreement; and what it answers to bad picks."""

import re
from typing import Any

import pytest
import redis
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from console.audit import Actor
from registry import compare, services
from registry.models import ModelVersion
from serving.models import MetricRollup, Rollout
from tests import models as built

pytestmark = pytest.mark.django_db


def report(*latencies: tuple[int, float]) -> dict[str, Any]:
    return {"runtime": "onnxruntime", "runtime_version": "1", "provider": "CPUExecutionProvider", "load_ms": 2.0,
            "runs": [{"batch_size": batch, "latency_ms": ms, "output_shapes": {}} for batch, ms in latencies]}


def add(model: Any, data: bytes, latencies: tuple[tuple[int, float], ...] = ()) -> ModelVersion:
    version, _ = services.register_version(actor=Actor.system("tests"), model=model,
                                           upload=SimpleUploadedFile("m.onnx", data))
    ModelVersion.objects.filter(pk=version.pk).update(status="validating")
    services.finish_validation(actor=Actor.system("tests"), version_id=version.pk, report=report(*latencies))
    version.refresh_from_db()
    return version


@pytest.fixture
def model(teams: dict[str, Any], cast: dict[str, Any]) -> Any:
    """iris: v1 takes x[batch, 8] → probs[batch, 3], v2 x[batch, 4] → probs[batch, 3]; both validated."""
    iris = services.create_model(actor=Actor(user=cast["engineer"]), name="iris", team=teams["ml"])
    add(iris, built.mlp_onnx(inputs=8, outputs=3), ((1, 0.5), (64, 4.0)))
    add(iris, built.mlp_onnx(inputs=4, outputs=3, seed=2), ((1, 0.25), (64, 6.0)))
    return iris


@pytest.fixture
def engineer(cast: dict[str, Any]) -> Client:
    client = Client()
    client.force_login(cast["engineer"])
    return client


def rows(html: str) -> dict[str, str]:
    """Each signature row's tensor name → its change marker."""
    return dict(re.findall(r'data-tensor="([^"]+)" data-change="([^"]+)"', html))


def test_the_page_shows_both_versions_and_marks_a_changed_shape(engineer: Client, model: Any) -> None:
    response = engineer.get("/models/iris/compare/", {"a": "1", "b": "2"})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'href="/models/iris/versions/1/"' in html and 'href="/models/iris/versions/2/"' in html
    assert rows(html) == {"x": "changed", "probs": "same"}
    assert 'data-differs="true"' in html
    assert "<mark>[-1, 4]</mark>" in html  # b's shape, highlighted
    assert "<mark>FP32</mark>" not in html  # the datatype did not change


def test_names_only_in_one_version_are_marked_on_their_side(engineer: Client, model: Any) -> None:
    odd = built.identity_per_datatype()
    add(model, odd)
    html = engineer.get("/models/iris/compare/", {"a": "1", "b": "3"}).content.decode()
    changes = rows(html)
    assert changes["x"] == "only_a" and changes["probs"] == "only_a"
    assert changes["in_FP32"] == "only_b" and changes["out_BYTES"] == "only_b"
    assert "only in v1" in html and "only in v3" in html


def test_the_same_signature_is_not_marked(engineer: Client, model: Any) -> None:
    html = engineer.get("/models/iris/compare/", {"a": "2", "b": "2"}).content.decode()
    assert set(rows(html).values()) == {"same"} and 'data-differs="false"' in html and "<mark>" not in html


def test_validation_latencies_line_up_by_batch_size_with_their_ratio(engineer: Client, model: Any) -> None:
    html = engineer.get("/models/iris/compare/", {"a": "1", "b": "2"}).content.decode()
    assert re.search(r'data-batch="1"><td>1</td><td>0.5</td><td>0.25</td><td>0.5</td>', html)
    assert re.search(r'data-batch="64"><td>64</td><td>4.0</td><td>6.0</td><td>1.5</td>', html)


def test_without_a_and_b_it_compares_the_newest_two(engineer: Client, model: Any) -> None:
    html = engineer.get("/models/iris/compare/").content.decode()
    assert re.search(r'name="a">.*<option value="1" selected>v1</option>', html)
    assert re.search(r'name="b">.*<option value="2" selected>v2</option>', html)


def test_shadow_agreement_shows_from_the_kept_figures_and_shadow_rollouts(engineer: Client, model: Any) -> None:
    v1, v2 = model.versions.get(number=1), model.versions.get(number=2)
    start = timezone.now().replace(second=0, microsecond=0)
    MetricRollup.objects.create(version=v2, resolution=60, start=start, requests=0, errors=0,
                                counts={"sn": 40, "se": 0, "sr": 40, "sa": 38, "sd": 120})
    MetricRollup.objects.create(version=v1, resolution=60, start=start, requests=40, errors=2,
                                counts={"c200": 38, "c500": 2})
    Rollout.objects.create(model=model, strategy="shadow", stable_version=v1, candidate_version=v2, steps=[50],
                           state="rolled_back",
                           last_check={"candidate": {"shadow": {"agreement": 0.93, "requests": 120}}})
    html = engineer.get("/models/iris/compare/", {"a": "1", "b": "2"}).content.decode()
    kept = re.search(r'<tr id="kept-shadow">(.*?)</tr>', html, re.S)
    assert kept is not None and "0.95 (40)" in kept.group(1) and "— (0)" in kept.group(1)
    assert "<td>0.05</td>" in html  # v1's kept error rate
    assert re.search(r"v1 → v2</td>\s*<td>rolled_back</td><td>0.93</td><td>120</td>", html)


def test_without_any_shadow_there_is_no_agreement_row(engineer: Client, model: Any) -> None:
    html = engineer.get("/models/iris/compare/", {"a": "1", "b": "2"}).content.decode()
    assert 'id="kept-shadow"' not in html and "Shadow rollouts between them" not in html


def test_live_figures_are_said_to_be_unavailable_while_redis_is_down(
        engineer: Client, model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(compare.live, "model_figures", down)
    response = engineer.get("/models/iris/compare/", {"a": "1", "b": "2"})
    assert response.status_code == 200
    assert "Figures unavailable: Paddock's Redis cannot be reached." in response.content.decode()


@pytest.mark.parametrize(("query", "status", "message"), [
    ({"a": "one", "b": "2"}, 400, "&#x27;a&#x27; must be a version number, e.g. ?a=1&amp;b=2"),
    ({"a": "1", "b": "-2"}, 400, "&#x27;b&#x27; must be a version number, e.g. ?a=1&amp;b=2"),
    ({"a": "1", "b": "9" * 40}, 400, "&#x27;b&#x27; must be a version number, e.g. ?a=1&amp;b=2"),
    ({"a": "9", "b": "2"}, 404, "model &#x27;iris&#x27; has no version 9"),
    ({"a": "1", "b": "0"}, 404, "model &#x27;iris&#x27; has no version 0"),
], ids=["word", "negative", "forty-digits", "unknown", "zero"])
def test_a_bad_pick_is_answered_with_its_message_in_the_page(engineer: Client, model: Any, query: dict[str, str],
                                                             status: int, message: str) -> None:
    response = engineer.get("/models/iris/compare/", query)
    assert response.status_code == status
    html = response.content.decode()
    assert f'<p class="error" role="alert">{message}</p>' in html
    assert 'data-tensor="' not in html


def test_a_model_without_versions_has_nothing_to_compare(engineer: Client, teams: dict[str, Any],
                                                         cast: dict[str, Any]) -> None:
    services.create_model(actor=Actor(user=cast["engineer"]), name="empty", team=teams["ml"])
    response = engineer.get("/models/empty/compare/")
    assert response.status_code == 404
    assert "model &#x27;empty&#x27; has no versions to compare yet" in response.content.decode()


def test_outsiders_get_404_and_strangers_the_login(cast: dict[str, Any], model: Any) -> None:
    outsider = Client()
    outsider.force_login(cast["outsider"])
    assert outsider.get("/models/iris/compare/", {"a": "1", "b": "2"}).status_code == 404
    response = Client().get("/models/iris/compare/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_the_model_page_offers_the_comparison(engineer: Client, model: Any) -> None:
    html = engineer.get("/models/iris/").content.decode()
    assert 'id="compare-form" method="get" action="/models/iris/compare/"' in html
    assert re.search(r'name="a">.*<option value="1" selected>v1</option>', html)
