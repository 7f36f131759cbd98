"""Faults, with real processes: a worker killed with SIGKILL under load, Redis restarted under
load, no worker at all, a full queue. Every request ends in a reply or a clear error."""

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import redis

from console.audit import Actor
from console.services import create_token
from registry import services
from registry.models import ModelVersion
from serving.services import configure_deployment
from serving.v2.wire import GROUP, stream_key
from tests import models as built
from tests.conftest import Process, child_env, free_port, port_open, spawn_web, spawn_worker, stop, wait_until
from tests.integration.conftest import Served, register_ready, wait_until_served
from tests.integration.test_serving import call, infer_json

CLIENT_TIMEOUT = 60  # well past the 30 s default deadline: a request that hangs fails the test


def document(i: int, **parameters: Any) -> dict[str, Any]:  # an iris request
    x = np.random.default_rng(i).standard_normal((1, 8)).astype(np.float32)
    body: dict[str, Any] = {"id": str(i), "inputs": [
        {"name": "x", "datatype": "FP32", "shape": [1, 8], "data": x.ravel().tolist()}]}
    if parameters:
        body["parameters"] = parameters
    return body


def expected(session: ort.InferenceSession, i: int) -> np.ndarray:
    x = np.array(document(i)["inputs"][0]["data"], dtype=np.float32).reshape(1, 8)
    return session.run(None, {"x": x})[0].ravel()


def holders(base: str, token: str, model: str) -> int:
    _, _, text = call(base, "GET", "/metrics", token=token)
    return sum(1 for line in text.decode().splitlines()
               if line.startswith("paddock_worker_version_loaded{") and f'model="{model}"' in line)


@dataclass
class SlowModelOnTwoWorkers:
    """A model that takes milliseconds per batch, held by the session's worker and a second one,
    and 1-row requests to it from 16 threads: (status, answer) by request number in `results`."""

    version: ModelVersion
    second: Process
    inputs: list[np.ndarray]
    results: dict[int, tuple[int, dict[str, Any]]]

    def load(self, web_server: str, token: str) -> tuple[ThreadPoolExecutor, list[Future[None]]]:
        """Start sending every input at once over 16 threads; the pool and the requests' futures."""
        def one(i: int) -> None:
            body = {"id": str(i), "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1024],
                                              "data": self.inputs[i].ravel().tolist()}]}
            status, _, answer = infer_json(web_server, token, self.version.model.name, body)
            self.results[i] = (status, answer)

        pool = ThreadPoolExecutor(16)
        return pool, [pool.submit(one, i) for i in range(len(self.inputs))]


@contextmanager
def slow_model_on_two_workers(name: str, worker: str, requests: int, served: Served, web_server: str,
                              cast: dict[str, Any], teams: dict[str, Any],
                              tmp_path: Path) -> Iterator[SlowModelOnTwoWorkers]:
    """Model `name` (slow) with min_workers 2: the second worker (named `worker`) is stopped after."""
    actor = Actor(user=cast["engineer"])
    model = services.create_model(actor=actor, name=name, team=teams["ml"])
    version = register_ready(actor=actor, model=model, data=built.slow_onnx())
    configure_deployment(actor=actor, model=model, changes={"min_workers": 2})
    second = spawn_worker(tmp_path / f"{worker}.log", name=worker)
    try:
        wait_until(lambda: holders(web_server, served.token, name) == 2, timeout=30, interval=0.3)
        inputs = [np.random.default_rng(i).standard_normal((1, 1024)).astype(np.float32) for i in range(requests)]
        yield SlowModelOnTwoWorkers(version, second, inputs, {})
    finally:
        stop(second)


def test_a_worker_killed_under_load_leaves_no_request_unanswered(served: Served, web_server: str,
                                                                 celery_worker: Any, cast: dict[str, Any],
                                                                 teams: dict[str, Any], tmp_path: Path) -> None:
    # The doomed worker is mid-batch, holding requests it has read but not answered, when it is killed.
    with slow_model_on_two_workers("slow", "doomed", 300, served, web_server, cast, teams, tmp_path) as slow:
        pool, futures = slow.load(web_server, served.token)
        with pool:
            wait_until(lambda: len(slow.results) >= 60, timeout=60, interval=0.01)
            stranded = freeze_holding_requests(slow.second, stream_key(slow.version.pk, slow.version.sha256))
            slow.second.popen.send_signal(signal.SIGKILL)
            for future in futures:
                future.result(timeout=CLIENT_TIMEOUT)
    session = ort.InferenceSession(slow.version.artifact.path)
    assert len(slow.results) == len(slow.inputs)  # none vanished
    for i, (status, body) in slow.results.items():
        assert status == 200, body  # answered by the survivor after claiming, within the deadline
        assert body["id"] == str(i)  # each caller got its own answer, once
        np.testing.assert_allclose(body["outputs"][0]["data"], session.run(None, {"x": slow.inputs[i]})[0].ravel(),
                                   rtol=1e-4, atol=1e-5)
    # The survivor took over what the dead worker had read but not answered.
    assert stranded > 0
    assert "abandoned request(s) of slow v1" in celery_worker.output()


def test_a_worker_stopped_under_load_drains_what_it_holds_and_exits_cleanly(
        served: Served, web_server: str, celery_worker: Any, cast: dict[str, Any], teams: dict[str, Any],
        tmp_path: Path) -> None:
    """SIGTERM (a restart, a deploy, the memory limit) while the worker holds requests it has
    read but not answered: it finishes and answers them itself, then exits 0; nothing waits for
    the other worker to claim them (which takes a claim timeout and a stale heartbeat)."""
    claims_before = celery_worker.output().count("abandoned request(s) of drained")
    with slow_model_on_two_workers("drained", "leaving", 200, served, web_server, cast, teams, tmp_path) as slow:
        stream = stream_key(slow.version.pk, slow.version.sha256)
        pool, futures = slow.load(web_server, served.token)
        with pool:
            wait_until(lambda: len(slow.results) >= 40, timeout=60, interval=0.01)
            held = freeze_holding_requests(slow.second, stream, prefix=b"leaving-")
            slow.second.popen.send_signal(signal.SIGTERM)  # delivered when it runs again
            slow.second.popen.send_signal(signal.SIGCONT)
            assert slow.second.popen.wait(timeout=60) == 0, slow.second.output()[-3000:]
            for future in futures:
                future.result(timeout=CLIENT_TIMEOUT)
    assert held > 0
    assert sorted(slow.results) == list(range(len(slow.inputs)))
    assert {status for status, _ in slow.results.values()} == {200}, [
        b for s, b in slow.results.values() if s != 200][:3]
    pending = redis.Redis.from_url(os.environ["REDIS_URL"]).xpending(stream, GROUP)
    assert not [c for c in pending["consumers"] if c["name"].startswith(b"leaving-")]  # it acknowledged all it took
    assert celery_worker.output().count("abandoned request(s) of drained") == claims_before  # nothing to claim


def freeze_holding_requests(worker: Any, stream: str, prefix: bytes = b"doomed-") -> int:
    """SIGSTOP the worker at a moment it holds requests it has read but not answered (checked
    with XPENDING while it is frozen); return how many. The SIGKILL then strands them."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    for _ in range(2000):
        worker.popen.send_signal(signal.SIGSTOP)
        pending = client.xpending(stream, GROUP)
        held = sum(c["pending"] for c in pending["consumers"] if c["name"].startswith(prefix))
        if held:
            return int(held)
        worker.popen.send_signal(signal.SIGCONT)
        time.sleep(0.002)
    raise AssertionError("the worker never held a request")


@pytest.fixture
def isolated_redis(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A Redis of its own, so the test can stop and restart it without touching the suite's."""
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    state: dict[str, Any] = {"port": port, "url": f"redis://127.0.0.1:{port}/0"}

    def start() -> None:
        state["process"] = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_until(lambda: port_open(port), timeout=10, interval=0.05)

    def kill() -> None:
        state["process"].send_signal(signal.SIGKILL)
        state["process"].wait()

    state.update(start=start, kill=kill)
    start()
    yield state
    if state["process"].poll() is None:
        kill()


@pytest.fixture
def iris_model(transactional_db: Any, cast: dict[str, Any], teams: dict[str, Any], celery_worker: Any) -> Served:
    """iris v1, validated by the suite's worker (the isolated stacks share the database)."""
    actor = Actor(user=cast["engineer"])
    model = services.create_model(actor=actor, name="iris", team=teams["ml"])
    data = built.mlp_onnx(inputs=8, outputs=3)
    version = register_ready(actor=actor, model=model, data=data)
    _, raw = create_token(actor=actor, user=cast["engineer"], name="predictor", scopes=["predict", "read"])
    return Served("iris", version, raw, data)


def test_redis_restarted_under_load_gives_clear_errors_then_recovers(iris_model: Served,
                                                                     isolated_redis: dict[str, Any],
                                                                     tmp_path: Path) -> None:
    env = child_env(REDIS_URL=isolated_redis["url"], PADDOCK_CELERY_QUEUE=f"isolated-{os.getpid()}")
    worker = spawn_worker(tmp_path / "worker.log", env, name="isolated")
    web, base = spawn_web(tmp_path / "web.log", env)
    try:
        wait_until_served(base, iris_model.token, "iris", 1)
        outcomes: list[tuple[float, int, dict[str, Any]]] = []
        stop_load = threading.Event()

        def load() -> None:
            i = 0
            while not stop_load.is_set():
                started = time.monotonic()
                status, _, body = infer_json(base, iris_model.token, "iris", document(i, timeout=5_000_000))
                outcomes.append((started, status, body))
                i += 1

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        isolated_redis["kill"]()
        outage_started = time.monotonic()
        time.sleep(1.0)
        isolated_redis["start"]()

        def recovered() -> bool:
            recent = outcomes[-20:]
            return sum(1 for started, status, _ in recent if status == 200 and started > outage_started) >= 10

        wait_until(recovered, timeout=30, interval=0.2)
        stop_load.set()
        for thread in threads:
            thread.join(timeout=CLIENT_TIMEOUT)
        assert not any(thread.is_alive() for thread in threads)  # every request ended: none hung
    finally:
        stop(web)
        stop(worker)
    statuses = {status for _, status, _ in outcomes}
    assert statuses <= {200, 503, 504}, statuses
    failures = [body["error"] for _, status, body in outcomes if status != 200]
    assert failures, "the outage went unnoticed"
    assert all(isinstance(message, str) and message for message in failures)
    assert any("Redis" in message for message in failures), failures[:5]


def test_with_no_worker_a_request_gets_503_within_its_deadline(iris_model: Served, isolated_redis: dict[str, Any],
                                                               tmp_path: Path) -> None:
    env = child_env(REDIS_URL=isolated_redis["url"], PADDOCK_CELERY_QUEUE=f"isolated-{os.getpid()}")
    web, base = spawn_web(tmp_path / "web.log", env)
    try:
        wait_until(lambda: call(base, "GET", "/v2/models/iris", token=iris_model.token)[0] == 200, timeout=10)
        status, headers, body = infer_json(base, iris_model.token, "iris", document(1, timeout=300_000))
        assert (status, body) == (503, {"error": "model 'iris' version 1 is not loaded by any worker yet "
                                                 "(waited 300 ms); retry later"})
        assert headers["retry-after"] == "1"
    finally:
        stop(web)


def test_a_full_queue_answers_429_with_retry_after(iris_model: Served, isolated_redis: dict[str, Any],
                                                   cast: dict[str, Any], tmp_path: Path) -> None:
    configure_deployment(actor=Actor(user=cast["engineer"]), model=iris_model.version.model,
                         changes={"max_queue_depth": 2})
    env = child_env(REDIS_URL=isolated_redis["url"], PADDOCK_CELERY_QUEUE=f"isolated-{os.getpid()}")
    web, base = spawn_web(tmp_path / "web.log", env)  # no worker: nothing drains the queue
    try:
        wait_until(lambda: call(base, "GET", "/v2/models/iris", token=iris_model.token)[0] == 200, timeout=10)
        with ThreadPoolExecutor(2) as pool:
            waiting = [pool.submit(infer_json, base, iris_model.token, "iris", document(i, timeout=3_000_000))
                       for i in range(2)]
            wait_until(lambda: _queue_length(isolated_redis["url"], iris_model) == 2, timeout=10, interval=0.05)
            status, headers, body = infer_json(base, iris_model.token, "iris", document(3))
            assert (status, body) == (429, {"error": "model 'iris' version 1 has 2 requests queued, its limit is 2; "
                                                     "retry later"})
            assert headers["retry-after"] == "1"
            assert [future.result(timeout=CLIENT_TIMEOUT)[0] for future in waiting] == [503, 503]
    finally:
        stop(web)


def _queue_length(url: str, served: Served) -> int:
    return int(redis.Redis.from_url(url).xlen(stream_key(served.version.pk, served.version.sha256)))

