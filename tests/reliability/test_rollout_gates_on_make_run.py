"""Rollout gates judged on `make run`'s own processes (one web process, one worker, beat, SQLite,
the embedded Redis) under ~100 requests/s of the demo MLP: ten healthy canaries back to back,
with a CPU-hungry neighbour spinning beside them, are all promoted; a canary that fails 5% of
its requests, one 3× slower per row and one doing 100× the work per row are each rolled back,
each with its own reason (issue 21, item 6)."""

import http.client
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.conftest import wait_until
from tests.reliability.models import TRIGGER, demo_variant
from tests.reliability.stack import GUARD_SECONDS, Stack, runstack

RATE = 100  # requests per second, over every client
CLIENTS = 8
STEP_SECONDS = 6  # each canary step is held this long: ~300 requests per arm at 50%
TICK_SECONDS = "1"  # PADDOCK_ROLLOUT_TICK_SECONDS, a documented user setting (2 by default)
HEALTHY = 10


def canary(stack: Stack, candidate: int) -> dict[str, Any]:
    """A canary of `candidate` at [50, 100] with the default gates, until it ends: the rollout."""
    started = stack.api("POST", "/api/v1/models/demo-mlp/rollouts/", json.dumps({
        "candidate": candidate, "strategy": "canary", "steps": [50, 100], "step_seconds": STEP_SECONDS,
    }).encode())
    path = f"/api/v1/models/demo-mlp/rollouts/{started['id']}/"
    return wait_until(lambda: (r := stack.api("GET", path))["state"] in ("promoted", "rolled_back") and r,
                      timeout=GUARD_SECONDS, interval=0.5)


class PacedLoad:
    """RATE requests/s from CLIENTS keep-alive connections; `trigger`: the share of requests
    holding the value the picky variant fails on. Counts (status, version) of every answer."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.trigger = 0.0
        self.answers: Counter[tuple[int, str]] = Counter()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(k,), daemon=True) for k in range(CLIENTS)]

    def _client(self, index: int) -> None:
        rng = np.random.default_rng(index)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        interval = CLIENTS / RATE
        due = time.monotonic() + index * interval / CLIENTS
        while not self.stopping.is_set():
            row = rng.random(64, dtype=np.float32)
            if rng.random() < self.trigger:
                row[int(rng.integers(64))] = TRIGGER
            body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64],
                                           "data": row.tolist()}]})
            try:
                connection.request("POST", "/v2/models/demo-mlp/infer", body,
                                   {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                self.answers[(response.status, response.getheader("x-paddock-version", ""))] += 1
            except OSError:
                self.answers[(0, "")] += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            due += interval
            self.stopping.wait(max(0.0, due - time.monotonic()))

    def __enter__(self) -> "PacedLoad":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`make run` with rollout gates judged every second (a documented setting; 2 s by default)."""
    with runstack(tmp_path_factory.mktemp("make-run"), "read", "manage", "predict",
                  PADDOCK_ROLLOUT_TICK_SECONDS=TICK_SECONDS) as running:
        yield running


@pytest.fixture(scope="module")
def load(stack: Stack) -> Iterator[PacedLoad]:
    with PacedLoad(stack.port, stack.token) as running:
        try:
            wait_until(lambda: running.answers[(200, "1")] >= 50, timeout=120, interval=0.5)
        except AssertionError:
            pytest.fail(f"demo-mlp does not answer: {running.answers}\n{stack.log.read_text()[-3000:]}")
        yield running


@pytest.fixture(scope="module")
def neighbour() -> Iterator[subprocess.Popen[bytes]]:
    """A CPU-hungry process beside `make run`: a Python loop spinning on one core."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield spinner
    finally:
        spinner.kill()
        spinner.wait()


def figures(rollout: dict[str, Any]) -> str:
    """What decided each step: per judged step, both versions' figures and each gate's inputs."""
    checks = [event["figures"] for event in rollout["events"] if event["kind"] in ("gate", "rollback", "promote")]
    return json.dumps([{"step": check.get("step"), "checks": check.get("checks"), "failures": check.get("failures"),
                        **{arm: {key: check[arm][key] for key in ("requests", "errors", "p50_ms", "p99_ms",
                                                                  "compute_per_row_us")}
                           for arm in ("candidate", "stable") if arm in check}}
                       for check in checks if check])


def test_ten_healthy_canaries_with_a_cpu_hungry_neighbour_are_all_promoted(
        stack: Stack, load: PacedLoad, neighbour: subprocess.Popen[bytes]) -> None:
    candidates = [stack.upload("demo-mlp", demo_variant(100 + k)) for k in range(HEALTHY)]
    outcomes = []
    for number in candidates:
        rollout = canary(stack, number)
        outcomes.append((number, rollout["state"], rollout["reason"]))
        print(number, rollout["state"], rollout["reason"], figures(rollout))
    assert neighbour.poll() is None, "the neighbour stopped spinning"
    assert outcomes == [(number, "promoted", "every step passed its gates") for number in candidates]
    served = {version for (status, version), n in load.answers.items() if status == 200}
    assert {str(number) for number in candidates} <= served


@pytest.mark.parametrize(("variant", "trigger", "reason"), [
    ({"picky": True}, 0.05, "error rate"),
    ({"hidden": 1024, "extra_layers": 32}, 0.0, "compute per row"),  # ~2.5 ms a row: 3× a request's time
    ({"hidden": 1600}, 0.0, "compute per row"),
], ids=["5%-errors", "3x-latency", "100x-work"])
def test_a_bad_canary_is_rolled_back_with_its_reason(
        stack: Stack, load: PacedLoad, neighbour: subprocess.Popen[bytes], variant: dict[str, Any], trigger: float,
        reason: str) -> None:
    number = stack.upload("demo-mlp", demo_variant(200 + len(variant) + int(trigger * 100), **variant))
    load.trigger = trigger
    try:
        rollout = canary(stack, number)
    finally:
        load.trigger = 0.0
    print(number, rollout["state"], rollout["reason"], figures(rollout))
    assert rollout["state"] == "rolled_back", figures(rollout)
    assert rollout["reason"].startswith("gate failed: "), rollout["reason"]
    assert reason in rollout["reason"], rollout["reason"]
