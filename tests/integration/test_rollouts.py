"""Traffic splits, A/B, shadow and rollouts through real processes: uvicorn web processes, the
Celery worker with its batcher, a Celery beat judging the gates every half second, Redis,
PostgreSQL, onnxruntime. Versions are told apart by their outputs, not only their labels."""

import functools
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from console.audit import Actor
from console.models import AuditEvent
from registry.models import ModelVersion
from serving.models import Rollout
from tests import models as built
from tests.conftest import Process, spawn_web, stop, wait_until
from tests.integration.conftest import Served, register_ready
from tests.integration.test_serving import call, infer_json, rows


def document(x: np.ndarray) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}


def outputs_of(data: bytes, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


class Traffic:
    """Clients sending requests in the background until stopped; what each got is kept."""

    def __init__(self, base: str, token: str, x: np.ndarray, clients: int = 3) -> None:
        self.base, self.token, self.x = base, token, x
        self.results: list[tuple[int, str, dict[str, Any]]] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        while not self.stopping.is_set():
            status, headers, body = infer_json(self.base, self.token, "iris", document(self.x))
            self.results.append((status, headers.get("x-paddock-version", ""), body))

    def __enter__(self) -> "Traffic":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)
            assert not thread.is_alive()


def add_version(served: Served, cast: dict[str, Any], data: bytes) -> ModelVersion:
    return register_ready(actor=Actor(user=cast["engineer"]), model=served.version.model, data=data)


def pin_v1(api: Any) -> None:
    response = api.patch("/api/v1/deployments/iris/", {"active_version": 1}, format="json")
    assert response.status_code == 200, response.json()


def with_v2(served: Served, cast: dict[str, Any], client_for: Any, data: bytes) -> Any:
    """Register `data` as iris v2, keep v1 serving, and return an engineer's API client."""
    add_version(served, cast, data)
    api = client_for("engineer")
    pin_v1(api)
    return api


def rollout_state(rollout_id: int, *states: str) -> Rollout | None:
    rollout = Rollout.objects.get(pk=rollout_id)
    return rollout if rollout.state in states else None


# -- hand-set traffic -------------------------------------------------------------------------

def test_a_split_is_sticky_per_caller_and_reaches_a_second_web_process(
        served: Served, web_server: str, client_for: Any, cast: dict[str, Any], tmp_path: Path) -> None:
    v2 = built.mlp_onnx(inputs=8, outputs=3, seed=5)
    api = with_v2(served, cast, client_for, v2)
    response = api.patch("/api/v1/deployments/iris/", {
        "routes": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}],
        "sticky_by": "header", "sticky_key": "X-User"}, format="json")
    assert response.status_code == 200, response.json()
    x = rows(2, seed=3)
    expected = {"1": outputs_of(served.artifact, x), "2": outputs_of(v2, x)}

    def versions_seen(base: str, user: str, times: int) -> set[str]:
        seen: set[str] = set()
        for _ in range(times):
            status, headers, body = infer_json(base, served.token, "iris", document(x), None, **{"X-User": user})
            assert status == 200, body
            assert body["model_version"] == headers["x-paddock-version"]
            np.testing.assert_allclose(np.array(body["outputs"][0]["data"]).reshape(2, 3),
                                       expected[body["model_version"]], rtol=1e-5, atol=1e-6)
            seen.add(body["model_version"])
        return seen

    def follows_v2(base: str) -> bool:
        return versions_seen(base, "alice", 1) == {"2"}

    wait_until(lambda: len(set().union(*(versions_seen(web_server, f"u{n}", 1) for n in range(12)))) == 2,
               timeout=10)
    for user in ("alice", "bob", "carol", "dave"):
        assert len(versions_seen(web_server, user, 5)) == 1, user
    # A second web process, then all traffic to v2: both processes follow without a restart.
    second, second_url = spawn_web(tmp_path / "web2.log")
    try:
        assert api.patch("/api/v1/deployments/iris/", {"routes": [{"version": 2, "weight": 100}]},
                         format="json").status_code == 200
        for base in (web_server, second_url):
            wait_until(functools.partial(follows_v2, base), timeout=10)
            assert versions_seen(base, "bob", 5) == {"2"}
    finally:
        stop(second)


def test_shadow_never_changes_the_answer_and_records_divergence(
        served: Served, web_server: str, client_for: Any, cast: dict[str, Any]) -> None:
    add_version(served, cast, built.mlp_onnx(inputs=8, outputs=3, seed=7))  # v2: other weights
    add_version(served, cast, built.picky_mlp_onnx())  # v3: fails on values above 50
    api = client_for("engineer")
    pin_v1(api)
    assert api.patch("/api/v1/deployments/iris/", {"shadow_version": 2, "shadow_percent": 100},
                     format="json").status_code == 200
    x = rows(4, seed=11)
    expected = outputs_of(served.artifact, x)

    def live_answer() -> bool:
        status, headers, body = infer_json(web_server, served.token, "iris", document(x))
        assert status == 200 and headers["x-paddock-version"] == "1"
        np.testing.assert_allclose(np.array(body["outputs"][0]["data"]).reshape(4, 3), expected, rtol=1e-5, atol=1e-6)
        return True

    def shadow_figures(number: int, at_least: int) -> dict[str, Any] | None:
        body = api.get("/api/v1/models/iris/metrics/?seconds=120").json()
        found = next((v for v in body["versions"] if v["version"] == number), None)
        return found["summary"]["shadow"] if found and found["summary"]["shadow"]["requests"] >= at_least else None

    # Requests keep coming until the web process has the shadow (its route cache: about a second)
    # and 30 comparisons are counted; every caller meanwhile gets v1's answer.
    figures = wait_until(lambda: live_answer() and shadow_figures(2, 30), timeout=30, interval=0.02)
    assert figures["errors"] == 0 and figures["mean_max_abs_diff"] > 0
    assert figures["agreement"] is not None and figures["agreement"] < 1  # other weights pick other classes
    # A shadow that fails: the callers still get v1's answers, and the failures are counted.
    assert api.patch("/api/v1/deployments/iris/", {"shadow_version": 3}, format="json").status_code == 200
    poisoned = x.copy()
    poisoned[:, 0] = 99.0
    expected = outputs_of(served.artifact, poisoned)
    x = poisoned
    failed = wait_until(lambda: live_answer() and shadow_figures(3, 10), timeout=30, interval=0.02)
    assert failed["errors"] == failed["requests"] and failed["agreement"] is None
    status, _, text = call(web_server, "GET", "/metrics", token=served.token)
    assert status == 200 and b'paddock_shadow_requests_total{model="iris",outcome="error",version="3"}' in text


# -- rollouts judged by their gates (beat) ----------------------------------------------------

def test_a_healthy_canary_advances_step_by_step_and_is_promoted(
        served: Served, web_server: str, client_for: Any, cast: dict[str, Any], beat: Process) -> None:
    v2 = built.mlp_onnx(inputs=8, outputs=3, seed=5)
    api = with_v2(served, cast, client_for, v2)
    x = rows(1, seed=4)
    expected = {"1": outputs_of(served.artifact, x), "2": outputs_of(v2, x)}
    with Traffic(web_server, served.token, x) as traffic:
        response = api.post("/api/v1/models/iris/rollouts/", {
            "candidate": 2, "strategy": "canary", "steps": [50, 100], "step_seconds": 2,
            "gates": {"min_requests": 10, "window_seconds": 5, "max_p99_ratio": 3}}, format="json")
        assert response.status_code == 201, response.json()
        rollout_id = response.json()["id"]
        wait_until(lambda: rollout_state(rollout_id, "promoted", "rolled_back"), timeout=90, interval=0.5)
    rollout = Rollout.objects.get(pk=rollout_id)
    assert rollout.state == "promoted", rollout.reason
    kinds = list(rollout.events.values_list("kind", flat=True))
    assert kinds == ["start", "step", "step", "gate", "step", "gate", "promote"]  # warming, 50%, 100%
    gate = rollout.events.filter(kind="gate").first()
    assert gate is not None
    assert gate.figures["candidate"]["requests"] >= 10 and gate.figures["failures"] == []
    assert served.version.model.aliases.get(name="champion").version.number == 2
    statuses = Counter(status for status, _, _ in traffic.results)
    assert statuses == {200: len(traffic.results)}
    assert {number for _, number, _ in traffic.results} == {"1", "2"}
    for _, number, body in traffic.results[-20:]:
        np.testing.assert_allclose(np.array(body["outputs"][0]["data"]).reshape(1, 3), expected[number],
                                   rtol=1e-5, atol=1e-6)
    audit = AuditEvent.objects.filter(action="rollout.promote").get()
    assert audit.after is not None
    assert audit.actor_username == "rollouts" and audit.after["message"] == "every step passed its gates"
    assert audit.after["figures"]["candidate"]["requests"] >= 10


@pytest.mark.parametrize("bad", ["errors", "slow"])
def test_a_bad_canary_is_rolled_back_by_its_gates(
        served: Served, web_server: str, client_for: Any, cast: dict[str, Any], beat: Process, bad: str) -> None:
    api = with_v2(served, cast, client_for,
                  built.picky_mlp_onnx() if bad == "errors" else built.slow_mlp_onnx(depth=400))
    x = rows(1, seed=4)
    if bad == "errors":
        x[0, 0] = 99.0  # v1 answers this; v2 fails on it
    # One client for the slow case: with more, v1's requests queue behind v2's runs on the one
    # worker and both versions' p99 grow together.
    with Traffic(web_server, served.token, x, clients=4 if bad == "errors" else 1) as traffic:
        response = api.post("/api/v1/models/iris/rollouts/", {
            "candidate": 2, "strategy": "canary", "steps": [50, 100], "step_seconds": 300,
            "gates": {"min_requests": 10, "window_seconds": 10}}, format="json")
        assert response.status_code == 201, response.json()
        rollout_id = response.json()["id"]
        wait_until(lambda: rollout_state(rollout_id, "rolled_back", "promoted"), timeout=90, interval=0.5)
        # The rollback reaches the web process within a second: then only v1 answers, all 200.
        wait_until(lambda: {(status, number) for status, number, _ in traffic.results[-20:]} == {(200, "1")},
                   timeout=30)
    rollout = Rollout.objects.get(pk=rollout_id)
    assert rollout.state == "rolled_back"
    # A slow model is slow per row too: the p99 and the compute-per-row gates both fail it.
    reasons = ("gate failed: error rate",) if bad == "errors" else ("gate failed: p99", "gate failed: compute per row")
    assert rollout.reason.startswith(reasons), rollout.reason
    audit = AuditEvent.objects.filter(action="rollout.rollback").get()
    assert audit.after is not None
    assert audit.actor_username == "rollouts" and audit.after["message"] == rollout.reason
    figures = audit.after["figures"]
    assert figures["candidate"]["requests"] >= 10 and figures["failures"]
    if bad == "errors":
        assert figures["candidate"]["errors"] > 0
        assert {status for status, number, _ in traffic.results if number == "2"} == {500}
    else:
        assert figures["candidate"]["p99_ms"] > figures["stable"]["p99_ms"]
    assert {status for status, number, _ in traffic.results if number == "1"} == {200}
