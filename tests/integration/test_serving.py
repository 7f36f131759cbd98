"""The v2 data plane through real processes: uvicorn (web), Redis, a Celery worker with its
batcher, onnxruntime. Results are compared with onnxruntime run directly."""

import glob
import http.client
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

import numpy as np
import onnxruntime as ort
import pytest
import redis
import tritonclient.http as triton
from django.conf import settings

from console.audit import Actor
from console.services import create_token
from registry import services
from serving.v2.wire import GROUP, stream_key
from tests import models as built
from tests.conftest import wait_until
from tests.integration.conftest import Served, register_ready, wait_until_served


def call(base: str, method: str, path: str, body: bytes | None = None, token: str | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    url = urlparse(base)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    connection.request(method, path, body=body, headers=all_headers)
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, payload


def infer_json(base: str, token: str, model: str, document: dict[str, Any], version: int | None = None,
               **headers: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    status, response_headers, payload = call(base, "POST", path, json.dumps(document).encode(), token, headers)
    return status, response_headers, json.loads(payload)


def rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)


def reference(served: Served, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(served.path)).run(None, {"x": x})[0]


def post_all_at_once(base: str, token: str, model: str, inputs: list[np.ndarray]) -> list[tuple[int, list[float]]]:
    """One JSON request per array of input `x`, all released together: (status, first output)."""
    start = threading.Barrier(len(inputs))

    def one(x: np.ndarray) -> tuple[int, list[float]]:
        body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape),
                                       "data": x.ravel().tolist()}]}).encode()
        start.wait()
        status, _, payload = call(base, "POST", f"/v2/models/{model}/infer", body, token)
        return status, json.loads(payload)["outputs"][0]["data"]

    with ThreadPoolExecutor(len(inputs)) as pool:
        return list(pool.map(one, inputs))


def triton_client(base: str) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=base.removeprefix("http://"), network_timeout=60,
                                        connection_timeout=60, concurrency=8)


# -- tritonclient, unchanged ------------------------------------------------------------------

@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_gets_what_onnxruntime_gives(served: Served, web_server: str, binary: bool) -> None:
    client = triton_client(web_server)
    headers = {"Authorization": f"Bearer {served.token}"}
    x = rows(5)
    tensor = triton.InferInput("x", [5, 8], "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    output = triton.InferRequestedOutput("probs", binary_data=binary)
    result = client.infer("iris", [tensor], outputs=[output], request_id="req-7", headers=headers)
    np.testing.assert_allclose(result.as_numpy("probs"), reference(served, x), rtol=1e-5, atol=1e-6)
    response = result.get_response()
    assert response["id"] == "req-7" and response["model_name"] == "iris" and response["model_version"] == "1"
    assert ("binary_data_size" in response["outputs"][0].get("parameters", {})) is binary


def test_tritonclient_health_metadata_and_readiness(served: Served, web_server: str) -> None:
    client = triton_client(web_server)
    headers = {"Authorization": f"Bearer {served.token}"}
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata(headers=headers)["extensions"] == ["binary_tensor_data"]
    metadata = client.get_model_metadata("iris", headers=headers)
    assert metadata["versions"] == ["1"] and metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 8]}]
    wait_until(lambda: client.is_model_ready("iris", headers=headers), timeout=30)
    assert client.is_model_ready("iris", "1", headers=headers)


def test_json_tensors_carry_every_datatype(served: Served, web_server: str, cast: dict[str, Any],
                                           teams: dict[str, Any]) -> None:
    actor = Actor(user=cast["engineer"])
    model = services.create_model(actor=actor, name="identities", team=teams["ml"])
    register_ready(actor=actor, model=model, data=built.identity_per_datatype())
    values: dict[str, list[list[Any]]] = {
        "BOOL": [[True, False]], "UINT8": [[0, 255]], "UINT16": [[0, 65535]], "UINT32": [[0, 4294967295]],
        "UINT64": [[0, 18446744073709551615]], "INT8": [[-128, 127]], "INT16": [[-32768, 32767]],
        "INT32": [[-2147483648, 2147483647]], "INT64": [[-9223372036854775808, 9223372036854775807]],
        "FP16": [[0.5, -2.0]], "FP32": [[1.25, -3.5]], "FP64": [[1e-300, 2.5]], "BYTES": [["héllo", ""]],
    }
    document = {"inputs": [{"name": f"in_{t}", "datatype": t, "shape": [1, 2], "data": v} for t, v in values.items()]}
    status, _, body = infer_json(web_server, served.token, "identities", document)
    assert status == 200, body
    returned = {o["name"]: o for o in body["outputs"]}
    for datatype, value in values.items():
        output = returned[f"out_{datatype}"]
        assert output["datatype"] == datatype and output["shape"] == [1, 2]
        assert output["data"] == [item for row in value for item in row], datatype
    # The same through tritonclient's binary tensors.
    client = triton_client(web_server)
    inputs = []
    arrays = {t: np.array(v, dtype=object if t == "BYTES" else triton.triton_to_np_dtype(t))
              for t, v in values.items()}
    arrays["BYTES"] = np.array([[b"h\xc3\xa9llo", b""]], dtype=object)
    for datatype, array in arrays.items():
        tensor = triton.InferInput(f"in_{datatype}", [1, 2], datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer("identities", inputs, headers={"Authorization": f"Bearer {served.token}"})
    for datatype, array in arrays.items():
        np.testing.assert_array_equal(result.as_numpy(f"out_{datatype}"), array)


def test_outputs_selects_outputs_and_the_answering_version_is_named(served: Served, web_server: str) -> None:
    document = {"id": "a1", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": rows(1).tolist()}],
                "outputs": [{"name": "probs"}]}
    status, headers, body = infer_json(web_server, served.token, "iris", document)
    assert status == 200 and headers["x-paddock-version"] == "1" and body["id"] == "a1"
    assert [o["name"] for o in body["outputs"]] == ["probs"]
    np.testing.assert_allclose(body["outputs"][0]["data"], reference(served, rows(1)).ravel(), rtol=1e-5)


# -- refusals: status and message -------------------------------------------------------------

def x_input(shape: list[int], datatype: str = "FP32", data: Any = None) -> dict[str, Any]:
    count = int(np.prod(shape))
    return {"name": "x", "datatype": datatype, "shape": shape, "data": data if data is not None else [0] * count}


BAD_REQUESTS: dict[str, tuple[dict[str, Any], str]] = {
    "unknown input": ({"inputs": [{**x_input([1, 8]), "name": "y"}]}, "unknown input 'y': the model takes x"),
    "missing input": ({"inputs": [{"name": "z", "datatype": "FP32", "shape": [1], "data": [1]}]},
                      "unknown input 'z': the model takes x"),
    "wrong shape": ({"inputs": [x_input([1, 7])]}, "input 'x': expected shape [-1, 8], received [1, 7]"),
    "wrong rank": ({"inputs": [x_input([8])]}, "input 'x': expected shape [-1, 8], received [8]"),
    "wrong datatype": ({"inputs": [x_input([1, 8], "INT64")]},
                       "input 'x': expected datatype FP32, received INT64"),
    "too few values": ({"inputs": [x_input([1, 8], data=[1, 2, 3])]},
                       "input 'x': shape [1, 8] needs 8 elements, received 3"),
    "strings for floats": ({"inputs": [x_input([1, 2], data=["a", "b"])]},
                           "input 'x': data is not FP32 (received string values)"),
    "unknown output": ({"inputs": [x_input([1, 8])], "outputs": [{"name": "logits"}]},
                       "unknown output 'logits': the model returns probs"),
    "no inputs": ({"inputs": []}, "'inputs' must be a non-empty list"),
    "over max batch": ({"inputs": [x_input([65, 8])]},
                       "a batch of 65 rows exceeds the deployment's max_batch_size of 64"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_bad_requests_get_400_naming_the_problem(served: Served, web_server: str, case: str) -> None:
    document, message = BAD_REQUESTS[case]
    status, _, body = infer_json(web_server, served.token, "iris", document)
    assert (status, body) == (400, {"error": message})


def test_malformed_bodies_get_400(served: Served, web_server: str) -> None:
    status, _, body = call(web_server, "POST", "/v2/models/iris/infer", b"{not json", served.token)
    assert status == 400 and json.loads(body)["error"].startswith("request body is not valid JSON: ")
    wrong = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8],
                                    "parameters": {"binary_data_size": 28}}]}).encode()
    status, _, body = call(web_server, "POST", "/v2/models/iris/infer", wrong + b"\x00" * 28, served.token,
                           {"Inference-Header-Content-Length": str(len(wrong))})
    assert (status, json.loads(body)) == (400, {"error": "input 'x': shape [1, 8] of FP32 needs 32 bytes, "
                                                         "received 28"})
    header = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8],
                                     "parameters": {"binary_data_size": 32}}]}).encode()
    status, _, body = call(web_server, "POST", "/v2/models/iris/infer", header + b"\x00" * 40, served.token,
                           {"Inference-Header-Content-Length": str(len(header))})
    assert (status, json.loads(body)) == (400, {"error": "the binary section has 8 bytes that no input claims"})
    short = header + b"\x00" * 16
    status, _, body = call(web_server, "POST", "/v2/models/iris/infer", short, served.token,
                           {"Inference-Header-Content-Length": str(len(header))})
    assert (status, json.loads(body)) == (400, {
        "error": "input 'x': binary_data_size 32 runs past the 16-byte binary section"})
    status, _, body = call(web_server, "POST", "/v2/models/iris/infer", header, served.token,
                           {"Inference-Header-Content-Length": "9999"})
    assert (status, json.loads(body)) == (400, {
        "error": f"Inference-Header-Content-Length is 9999 but the body has {len(header)} bytes"})


def test_an_oversized_body_gets_413_before_it_is_read(served: Served, web_server: str) -> None:
    url = urlparse(web_server)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    connection.putrequest("POST", "/v2/models/iris/infer")
    connection.putheader("Authorization", f"Bearer {served.token}")
    connection.putheader("Content-Length", str(1 << 30))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read()) == {"error": f"request body is {1 << 30} bytes; the limit is "
                                                    f"{64 * 1024 * 1024} bytes"}


def test_unknown_models_and_versions_get_404(served: Served, web_server: str) -> None:
    document = {"inputs": [x_input([1, 8])]}
    assert infer_json(web_server, served.token, "nope", document)[::2] == (404, {"error": "model 'nope' not found"})
    assert infer_json(web_server, served.token, "iris", document, version=9)[::2] == (
        404, {"error": "model 'iris' has no version 9"})


def test_unknown_routes_and_methods_get_the_tables_status(served: Served, web_server: str) -> None:
    status, _, body = call(web_server, "GET", "/v2/models/iris/infer", None, served.token)
    assert (status, json.loads(body)) == (405, {"error": "use POST for infer"})
    status, _, body = call(web_server, "GET", "/v2/models/iris/explain", None, served.token)
    assert (status, json.loads(body)) == (404, {"error": "no route for GET /v2/models/iris/explain"})


def test_tokens_are_checked_on_the_data_plane(served: Served, web_server: str, cast: dict[str, Any]) -> None:
    document = json.dumps({"inputs": [x_input([1, 8])]}).encode()
    status, _, body = call(web_server, "POST", "/v2/models/iris/infer", document)
    assert (status, json.loads(body)) == (401, {"error": "authentication required: send 'Authorization: "
                                                         "Bearer <token>'"})
    status, _, body = call(web_server, "POST", "/v2/models/iris/infer", document, "pdk_wrong")
    assert (status, json.loads(body)) == (401, {"error": "invalid token"})
    _, reader = create_token(actor=Actor.system("tests"), user=cast["engineer"], name="r", scopes=["read"])
    status, _, body = call(web_server, "POST", "/v2/models/iris/infer", document, reader)
    assert (status, json.loads(body)) == (403, {"error": "token lacks the 'predict' scope"})
    _, outsider = create_token(actor=Actor.system("tests"), user=cast["outsider"], name="o", scopes=["predict"])
    status, _, body = call(web_server, "POST", "/v2/models/iris/infer", document, outsider)
    assert (status, json.loads(body)) == (404, {"error": "model 'iris' not found"})


def test_a_passed_deadline_gets_504(served: Served, web_server: str, cast: dict[str, Any],
                                    teams: dict[str, Any]) -> None:
    actor = Actor(user=cast["engineer"])
    model = services.create_model(actor=actor, name="slow", team=teams["ml"])
    version = register_ready(actor=actor, model=model, data=built.slow_onnx())
    client = triton_client(web_server)
    headers = {"Authorization": f"Bearer {served.token}"}
    wait_until(lambda: client.is_model_ready("slow", headers=headers), timeout=30)
    busy = triton.InferInput("x", [64, 1024], "FP32")
    busy.set_data_from_numpy(np.ones((64, 1024), dtype=np.float32))
    # Ten full batches queued ahead keep the worker busy for well over the deadline below; the
    # deadline request goes only once four of them are in the stream unanswered: read by no
    # worker yet, or read and not acknowledged (a batch's XACK goes with the next round, so one
    # answered batch may still count). The stream's length alone also counted answered entries
    # whose XDEL was still to be sent, and a slowed test process found the queue drained (200, once).
    ahead = [client.async_infer("slow", [busy], headers=headers) for _ in range(10)]
    queue = redis.Redis.from_url(settings.REDIS_URL)
    key = stream_key(version.pk, version.sha256)

    def unanswered() -> int:
        groups = {g["name"].decode(): g for g in queue.xinfo_groups(key)}
        if GROUP not in groups:
            return 0
        unread = queue.xrange(key, min=f"({groups[GROUP]['last-delivered-id'].decode()}", max="+")
        return len(unread or []) + int(groups[GROUP]["pending"])

    wait_until(lambda: unanswered() >= 4, timeout=30)
    document = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1024], "data": [0.0] * 1024}],
                "parameters": {"timeout": 50_000}}  # microseconds, as in Triton
    status, _, body = infer_json(web_server, served.token, "slow", document)
    assert status == 504
    assert re.fullmatch(r"model 'slow' version 1 did not answer within 50 ms|"
                        r"the deadline passed after \d+ ms in the queue", body["error"]), body
    assert all(call.get_result().as_numpy("y").shape == (64, 1024) for call in ahead)


# -- batching ---------------------------------------------------------------------------------

def batch_counters(base: str, token: str, model: str) -> tuple[float, float]:
    _, _, text = call(base, "GET", "/metrics", token=token)
    batches = rows_ = 0.0
    for line in text.decode().splitlines():
        if f'model="{model}"' not in line:
            continue
        if line.startswith("paddock_inference_batches_total"):
            batches += float(line.rsplit(" ", 1)[1])
        elif line.startswith("paddock_inference_batch_rows_total"):
            rows_ += float(line.rsplit(" ", 1)[1])
    return batches, rows_


def test_64_concurrent_requests_are_served_in_fewer_than_64_batches(served: Served, web_server: str,
                                                                     cast: dict[str, Any],
                                                                     teams: dict[str, Any]) -> None:
    # A model that takes a few milliseconds per row, so that requests pile up while a batch runs
    # (the tiny iris model is answered faster than a test client can send).
    actor = Actor(user=cast["engineer"])
    model = services.create_model(actor=actor, name="slow", team=teams["ml"])
    version = register_ready(actor=actor, model=model, data=built.slow_onnx())
    wait_until_served(web_server, served.token, "slow", 1)
    session = ort.InferenceSession(version.artifact.path)
    before = batch_counters(web_server, served.token, "slow")
    inputs = [np.random.default_rng(seed).standard_normal((1, 1024)).astype(np.float32) for seed in range(64)]
    results = post_all_at_once(web_server, served.token, "slow", inputs)
    for (status, data), x in zip(results, inputs, strict=True):
        assert status == 200
        np.testing.assert_allclose(data, session.run(None, {"x": x})[0].ravel(), rtol=1e-4, atol=1e-5)

    def settled() -> tuple[float, float] | None:
        after = batch_counters(web_server, served.token, "slow")
        return after if after[1] - before[1] >= 64 else None

    after = wait_until(settled, timeout=10, interval=0.5)  # heartbeats publish the counters each second
    assert after[1] - before[1] == 64
    assert after[0] - before[0] < 64


def test_instances_run_batches_side_by_side_and_answer_as_onnxruntime_does(
        served: Served, web_server: str, client_for: Any, cast: dict[str, Any], teams: dict[str, Any]) -> None:
    actor = Actor(user=cast["engineer"])
    model = services.create_model(actor=actor, name="slow", team=teams["ml"])
    version = register_ready(actor=actor, model=model, data=built.slow_onnx())
    wait_until_served(web_server, served.token, "slow", 1)
    api = client_for("engineer", "read", "manage")
    refused = api.patch("/api/v1/deployments/slow/", {"instances": 0}, format="json")
    assert refused.status_code == 400, refused.content
    assert refused.json() == {"instances": ["Ensure this value is greater than or equal to 1."]}
    accepted = api.patch("/api/v1/deployments/slow/", {"instances": 2}, format="json")
    assert accepted.status_code == 200 and accepted.json()["instances"] == 2, accepted.content

    def held_with_two() -> bool:
        workers = api.get("/api/v1/workers/").json()
        return any(v["model"] == "slow" and v["instances"] == 2 for w in workers for v in w["versions"])

    wait_until(held_with_two, timeout=30, interval=0.5)  # the worker reloads it at its next plan
    session = ort.InferenceSession(version.artifact.path)
    inputs = [np.random.default_rng(seed).standard_normal((1 + seed % 3, 1024)).astype(np.float32)
              for seed in range(32)]
    results = post_all_at_once(web_server, served.token, "slow", inputs)
    for (status, data), x in zip(results, inputs, strict=True):
        assert status == 200
        np.testing.assert_allclose(data, session.run(None, {"x": x})[0].ravel(), rtol=1e-4, atol=1e-5)


# -- deployments ------------------------------------------------------------------------------

def test_deployment_changes_take_effect_without_a_restart(served: Served, web_server: str, client_for: Any,
                                                          cast: dict[str, Any]) -> None:
    actor = Actor(user=cast["engineer"])
    register_ready(actor=actor, model=served.version.model, data=built.mlp_onnx(inputs=8, outputs=3, seed=5))
    api = client_for("engineer", "read", "manage")
    # Without a deployment the champion (v1, the first ready version) answers, not the newer v2;
    # pin v1, then move to v2.
    response = api.patch("/api/v1/deployments/iris/", {"active_version": 1, "max_queue_depth": 50}, format="json")
    assert response.status_code == 200 and response.json()["serving_version"] == 1
    document = {"inputs": [x_input([1, 8])]}

    def answered_by(number: str) -> bool:
        status, headers, body = infer_json(web_server, served.token, "iris", document)
        return status == 200 and headers["x-paddock-version"] == number and body["model_version"] == number

    wait_until(lambda: answered_by("1"), timeout=10)
    api.patch("/api/v1/deployments/iris/", {"active_version": 2}, format="json")
    wait_until(lambda: answered_by("2"), timeout=10)
    from console.models import AuditEvent

    events = AuditEvent.objects.filter(action="deployment.configure").order_by("id")
    assert [(e.after or {}).get("active_version") for e in events] == [1, 2]
    assert (events[1].before or {}).get("active_version") == 1 and (events[1].after or {}).get("max_queue_depth") == 50
    refused = api.patch("/api/v1/deployments/iris/", {"max_batch_size": 0, "max_queue_delay_ms": 5}, format="json")
    assert refused.status_code == 400
    assert refused.json() == {"detail": "max_queue_delay_ms needs batching: set max_batch_size above 0"}
    capped = api.patch("/api/v1/deployments/iris/", {"max_queue_delay_ms": 1001}, format="json")
    assert capped.status_code == 400
    assert capped.json() == {"max_queue_delay_ms": ["Ensure this value is less than or equal to 1000."]}


def test_a_pinned_version_no_worker_holds_is_loaded_on_first_request(served: Served, web_server: str,
                                                                     cast: dict[str, Any]) -> None:
    actor = Actor(user=cast["engineer"])
    two = register_ready(actor=actor, model=served.version.model, data=built.mlp_onnx(inputs=8, outputs=3, seed=9))
    client = triton_client(web_server)
    headers = {"Authorization": f"Bearer {served.token}"}
    # Uploading v2 changed nothing: v1, the champion, serves and is held; v2 is held by no worker.
    wait_until(lambda: client.is_model_ready("iris", "1", headers=headers), timeout=30)
    # Once the web process's route cache knows v2 (its metadata answers), no worker holds it yet.
    wait_until(lambda: call(web_server, "GET", "/v2/models/iris/versions/2", token=served.token)[0] == 200, timeout=10)
    assert not client.is_model_ready("iris", "2", headers=headers)
    x = rows(3)
    tensor = triton.InferInput("x", [3, 8], "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("iris", [tensor], model_version="2", headers=headers)
    expected = ort.InferenceSession(two.artifact.path).run(None, {"x": x})[0]
    np.testing.assert_allclose(result.as_numpy("probs"), expected, rtol=1e-5, atol=1e-6)
    wait_until(lambda: client.is_model_ready("iris", "2", headers=headers), timeout=5)  # heartbeats: 1 s


def test_metrics_are_prometheus_text(served: Served, web_server: str) -> None:
    infer_json(web_server, served.token, "iris", {"inputs": [x_input([1, 8])]})
    infer_json(web_server, served.token, "iris", {"inputs": [x_input([1, 7])]})
    status, headers, text = call(web_server, "GET", "/metrics", token=served.token)
    assert status == 200 and headers["content-type"].startswith("text/plain")
    page = text.decode()
    assert 'paddock_inference_requests_total{code="200",model="iris",version="1"}' in page
    assert 'paddock_inference_requests_total{code="400",model="iris",version="1"}' in page
    for phase in ("queue", "compute", "total"):
        assert f'paddock_inference_request_duration_seconds_bucket{{le="0.001",model="iris",phase="{phase}"' in page
    assert "paddock_inference_batch_size_rows_bucket" in page
    assert 'paddock_worker_version_loaded{model="iris"' in page
    assert "paddock_worker_memory_bytes" in page and "paddock_inference_queue_depth" in page
    assert "paddock_worker_cpu_percent{" in page
    assert call(web_server, "GET", "/metrics")[0] == 401


def test_torchscript_versions_are_served_by_torch(served: Served, web_server: str, cast: dict[str, Any],
                                                  teams: dict[str, Any]) -> None:
    import torch

    actor = Actor(user=cast["engineer"])
    model = services.create_model(actor=actor, name="linear", team=teams["ml"])
    version = register_ready(actor=actor, model=model, data=built.torchscript_linear(), filename="linear.pt",
                             signature=built.TORCHSCRIPT_SIGNATURE)
    wait_until_served(web_server, served.token, "linear", 1)
    x = np.random.default_rng(3).standard_normal((6, 4)).astype(np.float32)
    tensor = triton.InferInput("x", [6, 4], "FP32")
    tensor.set_data_from_numpy(x)
    result = triton_client(web_server).infer("linear", [tensor], headers={"Authorization": f"Bearer {served.token}"})
    expected = torch.jit.load(version.artifact.path)(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(result.as_numpy("y"), expected, rtol=1e-5, atol=1e-6)


def test_workers_report_what_they_hold(served: Served, web_server: str, client_for: Any) -> None:
    workers = client_for("admin", "admin").get("/api/v1/workers/").json()  # host, pid, GPUs: admins only
    assert workers and workers[0]["memory_bytes"] > 0 and workers[0]["cpu_percent"] >= 0
    # GPU figures come from NVML, and only where a GPU is present.
    assert bool(workers[0]["gpus"]) == bool(glob.glob("/dev/nvidia[0-9]*"))
    held = [v for w in workers for v in w["versions"] if v["model"] == "iris"]
    assert held and held[0]["number"] == 1 and held[0]["provider"] == "CPUExecutionProvider"
