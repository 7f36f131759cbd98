"""The worker's batcher as an operator sees it, against real Redis (and real onnxruntime where a
model runs): its heartbeat goes on while a batch runs, stopping drains everything it took, past
its memory limit it recycles itself, and one version's queue delay never stalls another's."""

import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from pytest_django.fixtures import Settings

from serving.v2 import wire
from tests.workers.conftest import Queue, rows
from workers.batcher import Batcher
from workers.cache import Held, Plan
from workers.runtimes.onnx import OnnxRuntime


class Gate:
    """A stand-in runtime whose runs wait until the test opens the gate; it echoes its input."""

    name, provider, version, instances = "test", "test", "0", 1

    def __init__(self) -> None:
        self.running = threading.Event()
        self.open = threading.Event()
        self.runs: list[int] = []

    def run(self, feed: dict[str, np.ndarray], instance: int | None = None) -> dict[str, np.ndarray]:
        self.running.set()
        assert self.open.wait(30), "the test never opened the gate"
        self.runs.append(len(feed["x"]))
        return {"y": feed["x"]}


@pytest.fixture
def batcher(client: redis.Redis, queue: Queue) -> Iterator[Batcher]:
    """A batcher stopped before the queue's stream is deleted under it."""
    made = Batcher(consumer=f"drain-test-{uuid.uuid4().hex[:8]}")
    yield made
    made.stop()


def held(version_id: int, runtime: Any, stream: str, **batching: Any) -> Held:
    return Held(Plan(version_id, f"m{version_id}", 1, True, {"max_batch_size": 8, "max_queue_delay_ms": 0,
                                                             **batching}), runtime, 0, stream)


def beat_of(client: redis.Redis, batcher: Batcher) -> dict[str, Any] | None:
    return wire.fresh_heartbeats(client.hgetall(wire.workers_key())).get(batcher.consumer)


def first_beat(client: redis.Redis, batcher: Batcher) -> dict[str, Any]:
    """The batcher's heartbeat, once its thread has published one (5 s at most)."""
    for _ in range(50):
        if (beat := beat_of(client, batcher)) is not None:
            return beat
        time.sleep(0.1)
    raise AssertionError("no heartbeat")


def answered(queues: list[Queue], expected: int, rounds: int = 100) -> dict[int, dict[str, Any]]:
    """Replies by request id, read from every queue until `expected` came (or `rounds` reads of 0.1 s)."""
    found: dict[int, dict[str, Any]] = {}
    for _ in range(rounds):
        for queue in queues:
            for message in queue.messages(timeout=0.05):
                found.update((answer[wire.RID], answer) for answer in message)
        if len(found) >= expected:
            break
    return found


def test_the_heartbeat_goes_on_while_a_batch_runs(batcher: Batcher, client: redis.Redis, queue: Queue) -> None:
    gate = Gate()
    batcher.cache.held = {1: held(1, gate, queue.stream)}
    batcher.next_plan = float("inf")
    batcher.start()
    try:
        queue.send(1, rows(1, start=0.0))
        assert gate.running.wait(10)
        first = first_beat(client, batcher)
        for _ in range(50):  # beats come each second; the batch still runs
            time.sleep(0.1)
            later = beat_of(client, batcher)
            if later and later["ts"] > first["ts"]:
                break
        assert later is not None and later["ts"] > first["ts"] and gate.runs == []
        assert [h["id"] for h in later["held"]] == [1]
    finally:
        gate.open.set()


def test_stopping_drains_the_batch_running_and_the_batches_held(batcher: Batcher, client: redis.Redis,
                                                                 queue: Queue) -> None:
    """SIGTERM's path: the batch running finishes, a partial batch held for its queue delay runs
    at once, every caller is answered, nothing is left pending, and the worker leaves the hash."""
    waiting = Queue(client)
    gate = Gate()
    slow = held(1, gate, queue.stream)
    open_gate = Gate()
    open_gate.open.set()
    delayed = held(2, open_gate, waiting.stream, max_queue_delay_ms=1000, max_batch_size=64)
    batcher.cache.held = {1: slow, 2: delayed}
    batcher.next_plan = float("inf")
    try:
        waiting.send(10, rows(1, start=0.0))
        batcher.start()
        queue.send(1, rows(1, start=0.0))
        assert gate.running.wait(10)
        first_beat(client, batcher)
        stopper = threading.Thread(target=batcher.stop)
        stopper.start()
        time.sleep(0.3)  # the stop is under way while the batch still runs
        assert beat_of(client, batcher) is None  # gone from the workers hash at once: others take over
        gate.open.set()
        stopper.join(30)
        assert not stopper.is_alive() and batcher.thread is not None and not batcher.thread.is_alive()
        replies = answered([queue, waiting], expected=2)
        assert {rid: answer[wire.KIND] for rid, answer in replies.items()} == {1: "", 10: ""}
        assert queue.pending() == 0 and waiting.pending() == 0
        assert client.xlen(queue.stream) == 0 and client.xlen(waiting.stream) == 0
    finally:
        gate.open.set()
        waiting.close()


def test_past_its_memory_limit_a_worker_drains_and_asks_to_be_recycled(
        client: redis.Redis, queue: Queue, mlp_path: Path, settings: Settings) -> None:
    settings.PADDOCK_WORKER_MAX_RSS_MB = 1  # below what any process needs: recycled after its first batch
    batcher = Batcher(consumer=f"drain-test-{uuid.uuid4().hex[:8]}")
    asked = threading.Event()
    batcher.on_recycle = asked.set  # in a worker: SIGTERM to itself, then Celery's warm shutdown drains
    batcher.cache.held = {1: held(1, OnnxRuntime(mlp_path, use_cuda=False), queue.stream)}
    batcher.next_plan = float("inf")
    try:
        batcher.start()
        assert not asked.wait(2.5)  # two beats over the limit, but nothing served yet: no recycling
        queue.send(1, rows(1, start=0.0))
        assert asked.wait(10) and batcher.recycling.is_set()
        assert answered([queue], expected=1)[1][wire.KIND] == ""
    finally:
        batcher.stop()
    assert queue.pending() == 0 and beat_of(client, batcher) is None


def latencies(queue: Queue, count: int, start: float) -> list[float]:
    """Send `count` one-row requests one after another; the time from each send to its reply, in ms."""
    found = []
    for rid in range(count):
        sent = time.perf_counter()
        queue.send(int(start) + rid, rows(1, start=start))
        message = queue.subscriber.get_message(timeout=10)
        while message is not None and message["type"] != "message":
            message = queue.subscriber.get_message(timeout=10)
        assert message is not None, "no reply"
        found.append((time.perf_counter() - sent) * 1000)
    return found


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def test_one_version_s_queue_delay_does_not_stall_another_version_on_the_same_worker(
        batcher: Batcher, client: redis.Redis, queue: Queue, mlp_path: Path) -> None:
    """Version 2 waits up to 1 s for fuller batches and gets a request every 20 ms; version 1,
    on the same worker and lane, answers as fast as when version 2 is idle. Before, the lane
    waited out version 2's delay with version 1's requests queued behind it."""
    patient = Queue(client)
    batcher.cache.held = {
        1: held(1, OnnxRuntime(mlp_path, use_cuda=False), queue.stream),
        2: held(2, OnnxRuntime(mlp_path, use_cuda=False), patient.stream, max_batch_size=64, max_queue_delay_ms=1000),
    }
    batcher.next_plan = float("inf")
    batcher.start()
    stop = threading.Event()

    sent = iter(range(100_000, 200_000))

    def trickle() -> None:
        while not stop.wait(0.02):
            patient.send(next(sent), rows(1, start=0.0))

    idle: list[float] = []
    busy: list[float] = []
    try:
        for block in range(3):  # idle and busy measured in turns, so that the machine's moods fall on both
            idle += latencies(queue, 100, start=block * 1000)
            stop.clear()
            feeder = threading.Thread(target=trickle)
            feeder.start()
            time.sleep(0.1)
            busy += latencies(queue, 100, start=block * 1000 + 500)
            stop.set()
            feeder.join()
    finally:
        stop.set()
    trickled = next(sent) - 100_000
    replies: list[dict[str, Any]] = []
    for _ in range(40):  # the last partial batch is due a second after its first request at most
        replies += [answer for message in patient.messages(timeout=0.1) for answer in message]
        if len(replies) >= trickled:
            break
    batcher.stop()  # before its stream is deleted under it
    patient.close()
    # Every trickled request answered once, in batches that waited to fill; held past the claim
    # timeout (1 s in tests), but by a live worker: never claimed and run twice.
    assert sorted(answer[wire.RID] for answer in replies) == list(range(100_000, 100_000 + trickled))
    assert max(answer[wire.BATCH] for answer in replies) > 1
    print(f"p99 busy {p99(busy):.2f} ms, idle {p99(idle):.2f} ms")
    assert p99(busy) < 10 * p99(idle), (p99(busy), p99(idle))
