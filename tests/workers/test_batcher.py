"""The batcher against real Redis and real onnxruntime: deadlines, splitting a batch's outputs,
priorities, failures, abandoned entries, waiting for a fuller batch and recovering a lost group
(how batches are formed and lanes: tests/serving/test_batching.py)."""

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from console.errors import KINDS
from serving.v2 import wire
from tests import models as built
from tests.workers.conftest import Queue, mlp_expected, model_file, outputs_of, rows
from workers.batcher import Batcher
from workers.cache import Held, Plan
from workers.runtimes.onnx import OnnxRuntime


@pytest.fixture
def batcher(client: redis.Redis) -> Iterator[Batcher]:
    made = Batcher(consumer=f"workers-test-{uuid.uuid4().hex[:8]}")
    made.next_plan = made.next_claim = float("inf")  # rounds without planning or claims unless a test asks
    yield made
    made.stop()


def held_for(queue: Queue, path: Path, **batching: Any) -> Held:
    plan = Plan(1, "m", 1, True, {"max_batch_size": 8, "max_queue_delay_ms": 0, **batching})
    return Held(plan, OnnxRuntime(path, use_cuda=False), 0, queue.stream)


def serve_queued(batcher: Batcher, held: Held) -> None:
    for _, entries in batcher.read([held.stream], count=64, block=100):
        batcher.serve(held, entries)
    batcher.flush()


def by_rid(messages: list[list[dict[str, Any]]]) -> dict[int, dict[str, Any]]:
    return {answer[wire.RID]: answer for message in messages for answer in message}


def rids(messages: list[list[dict[str, Any]]]) -> list[list[int]]:
    """The requests each reply message answers, in order."""
    return [[answer[wire.RID] for answer in message] for message in messages]


def failure(answer: dict[str, Any]) -> tuple[str, int, str, Any]:
    """An answer's error kind, the HTTP status that kind gets, its message and its outputs."""
    kind = answer[wire.KIND]
    return kind, KINDS[kind].status if kind else 200, answer[wire.ERROR], answer[wire.OUTPUTS]


def test_a_request_past_its_deadline_gets_504_and_never_reaches_the_runtime(
        batcher: Batcher, queue: Queue, mlp_path: Path) -> None:
    held = held_for(queue, mlp_path)
    queue.send(1, rows(1, start=0.0), deadline_ms=wire.now_ms() - 1)
    queue.send(2, rows(1, start=1.0))
    serve_queued(batcher, held)
    messages = queue.messages()
    assert rids(messages) == [[1, 2]]  # one message
    late, served = by_rid(messages)[1], by_rid(messages)[2]
    kind, status, error, outputs = failure(late)
    assert (kind, status, outputs, late[wire.BATCH]) == ("deadline", 504, None, 0)
    assert re.fullmatch(r"the deadline passed after \d+ ms in the queue", error), error
    assert failure(served)[:3] == ("", 200, "") and served[wire.BATCH] == 1
    assert (held.batches, held.rows) == (1, 1)
    assert queue.client.xlen(queue.stream) == 0 and queue.pending() == 0


def test_when_every_request_is_late_nothing_runs_and_all_are_acknowledged(
        batcher: Batcher, queue: Queue, mlp_path: Path) -> None:
    held = held_for(queue, mlp_path)
    for rid in (1, 2):
        queue.send(rid, rows(1, start=0.0), deadline_ms=wire.now_ms() - 1)
    serve_queued(batcher, held)
    messages = queue.messages()
    assert rids(messages) == [[1, 2]]
    assert [failure(a)[:2] for a in messages[0]] == [("deadline", 504)] * 2
    assert (held.batches, held.rows) == (0, 0)
    assert queue.client.xlen(queue.stream) == 0 and queue.pending() == 0


def test_one_run_answers_each_request_with_its_own_rows(batcher: Batcher, queue: Queue, mlp_path: Path) -> None:
    inputs = {1: rows(1, start=0.0), 2: rows(3, start=10.0), 3: rows(2, start=-5.0)}
    for rid, x in inputs.items():
        queue.send(rid, x)
    held = held_for(queue, mlp_path)
    serve_queued(batcher, held)
    answers = by_rid(queue.messages())
    assert (held.batches, held.rows) == (1, 6)
    for rid, x in inputs.items():
        assert failure(answers[rid])[:3] == ("", 200, "") and answers[rid][wire.BATCH] == 6
        assert answers[rid][wire.COMPUTE_MS] > 0 and answers[rid][wire.QUEUE_MS] >= 0
        probs = outputs_of(answers[rid])["probs"]
        assert probs.shape == (len(x), 3)
        np.testing.assert_allclose(probs, mlp_expected(x), rtol=1e-5, atol=1e-6)


def test_explicit_priorities_run_first_then_default_ones_in_arrival_order(
        batcher: Batcher, queue: Queue, mlp_path: Path) -> None:
    for rid, priority in ((1, 0), (2, 2), (3, 0), (4, 1), (5, 2)):
        queue.send(rid, rows(1, start=float(rid)), priority=priority)
    held = held_for(queue, mlp_path, max_batch_size=2)
    serve_queued(batcher, held)
    messages = queue.messages()
    assert rids(messages) == [[4, 2], [5, 1], [3]]
    assert [message[0][wire.BATCH] for message in messages] == [2, 2, 1]


def test_each_web_process_gets_one_message_with_only_its_own_replies(
        batcher: Batcher, queue: Queue, client: redis.Redis, mlp_path: Path) -> None:
    other = f"{queue.channel}:other"
    listener = client.pubsub()
    listener.subscribe(other)
    assert listener.get_message(timeout=5)["type"] == "subscribe"
    try:
        for rid, to in ((1, queue.channel), (2, other), (3, queue.channel)):
            queue.send(rid, rows(1, start=float(rid)), reply_to=to)
        serve_queued(batcher, held_for(queue, mlp_path))
        assert rids(queue.messages()) == [[1, 3]]
        message = listener.get_message(timeout=1)
        assert message is not None and rids([wire.unpack_replies(message["data"])]) == [[2]]
        assert listener.get_message(timeout=0.2) is None
    finally:
        listener.close()


PICKY_ERROR = ("inference", 500, "inference failed: [ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Non-zero status "
               "code returned while running Gather node. Name:'' Status Message: indices element out of data bounds, "
               "idx=7 must be within the inclusive range [-1,0]", None)


def poisoned(start: float) -> np.ndarray:
    x = rows(1, start=start)
    x[0, 3] = 99.0  # above picky_mlp_onnx's limit of 50
    return x


def test_a_failed_run_answers_500_with_the_runtime_s_message_to_every_request_of_its_batch(
        batcher: Batcher, queue: Queue, tmp_path: Path) -> None:
    held = held_for(queue, model_file(tmp_path, built.picky_mlp_onnx()))
    queue.send(1, rows(1, start=0.0))
    queue.send(2, poisoned(0.0))
    queue.send(3, rows(2, start=1.0))
    serve_queued(batcher, held)
    answers = by_rid(queue.messages())
    assert {rid: failure(a) for rid, a in answers.items()} == {rid: PICKY_ERROR for rid in (1, 2, 3)}
    assert (held.batches, held.rows) == (0, 0)
    assert queue.client.xlen(queue.stream) == 0 and queue.pending() == 0
    queue.send(4, rows(1, start=2.0))  # the batcher goes on
    serve_queued(batcher, held)
    messages = queue.messages()
    assert rids(messages) == [[4]] and failure(messages[0][0])[:2] == ("", 200)


def test_with_max_batch_size_1_a_failing_request_fails_alone(batcher: Batcher, queue: Queue, tmp_path: Path) -> None:
    held = held_for(queue, model_file(tmp_path, built.picky_mlp_onnx()), max_batch_size=1)
    queue.send(1, rows(1, start=0.0))
    queue.send(2, poisoned(0.0))
    queue.send(3, rows(1, start=1.0))
    serve_queued(batcher, held)
    assert {rid: failure(a)[1] for rid, a in by_rid(queue.messages()).items()} == {1: 200, 2: 500, 3: 200}
    assert (held.batches, held.rows) == (2, 2)


def test_requests_a_dead_consumer_left_unanswered_are_claimed_and_served(
        batcher: Batcher, queue: Queue, client: redis.Redis, mlp_path: Path) -> None:
    inputs = {1: rows(1, start=0.0), 2: rows(2, start=3.0)}
    ids: list[Any] = [queue.send(rid, x) for rid, x in inputs.items()]
    client.xreadgroup(wire.GROUP, "dead-worker", {queue.stream: ">"})
    # Idle for 5 s, past PADDOCK_CLAIM_IDLE_MS (1 s in tests), without waiting for it.
    client.xclaim(queue.stream, wire.GROUP, "dead-worker", 0, ids, idle=5000)
    queue.send(3, rows(1, start=9.0))
    client.xreadgroup(wire.GROUP, "busy-worker", {queue.stream: ">"})  # read just now: not abandoned
    queue.send(4, rows(1, start=4.0))
    read: Any = client.xreadgroup(wire.GROUP, "live-worker", {queue.stream: ">"})
    four = read[0][1][0][0]
    client.xclaim(queue.stream, wire.GROUP, "live-worker", 0, [four], idle=5000)  # idle, but its worker lives:
    client.hset(wire.workers_key(), "live-worker", wire.pack_heartbeat({"held": []}))  # a long batch, not abandoned
    held = held_for(queue, mlp_path)
    batcher.claim_abandoned([held])
    batcher.flush()
    answers = by_rid(queue.messages())
    assert sorted(answers) == [1, 2]
    for rid, x in inputs.items():
        np.testing.assert_allclose(outputs_of(answers[rid])["probs"], mlp_expected(x), rtol=1e-5, atol=1e-6)
    pending = client.xpending_range(queue.stream, wire.GROUP, min="-", max="+", count=10)
    assert [(entry["consumer"], entry["times_delivered"]) for entry in pending] == [(b"busy-worker", 1),
                                                                                    (b"live-worker", 2)]
    assert client.xlen(queue.stream) == 2


def test_a_round_runs_no_more_than_max_batch_size_rows_at_once(batcher: Batcher, queue: Queue,
                                                                mlp_path: Path) -> None:
    for rid in range(1, 6):
        queue.send(rid, rows(1, start=float(rid)))
    held = held_for(queue, mlp_path, max_batch_size=2)
    batcher.cache.held = {1: held}
    batcher.step()
    batcher.flush()
    assert rids(queue.messages()) == [[1, 2]]
    assert queue.client.xlen(queue.stream) == 3 and queue.pending() == 0  # the rest wait for any worker
    for _ in range(2):
        batcher.step()
    batcher.flush()
    assert rids(queue.messages()) == [[3, 4], [5]]
    assert (held.batches, held.rows) == (3, 5)


def test_with_a_queue_delay_the_lane_holds_a_partial_batch_until_it_fills(batcher: Batcher, queue: Queue,
                                                                          mlp_path: Path) -> None:
    held = held_for(queue, mlp_path, max_batch_size=2, max_queue_delay_ms=1000)
    lane = batcher.lanes[0]
    queue.send(1, rows(1, start=0.0))
    batcher.take(lane, [held])
    assert queue.messages(timeout=0.1) == [] and list(lane.waiting) == [queue.stream]  # held, not run
    queue.send(2, rows(1, start=1.0))
    batcher.take(lane, [held])  # full: runs at once, long before its delay ends
    batcher.flush()
    assert rids(queue.messages()) == [[1, 2]] and (held.batches, held.rows) == (1, 2)
    assert lane.waiting == {} and lane.until == {}


def test_a_queue_delay_ends_at_a_preferred_batch_size_or_when_it_runs_out(batcher: Batcher, queue: Queue,
                                                                          mlp_path: Path) -> None:
    lane = batcher.lanes[0]
    preferring = held_for(queue, mlp_path, max_batch_size=8, max_queue_delay_ms=1000, preferred_batch_sizes=[2])
    for rid in (1, 2):
        queue.send(rid, rows(1, start=0.0))
    batcher.take(lane, [preferring])
    batcher.flush()
    assert rids(queue.messages()) == [[1, 2]] and lane.waiting == {}
    waiting = held_for(queue, mlp_path, max_batch_size=8, max_queue_delay_ms=300)
    queue.send(3, rows(1, start=0.0))
    answered: list[list[dict[str, Any]]] = []
    for _ in range(100):  # each round blocks until the held batch is due, 300 ms at most
        batcher.take(lane, [waiting])
        batcher.flush()
        if answered := queue.messages(timeout=0.05):
            break
    assert rids(answered) == [[3]] and answered[0][0][wire.BATCH] == 1
    assert answered[0][0][wire.QUEUE_MS] >= 300  # it waited its delay out for company that never came


def test_a_queue_delay_above_the_cap_waits_no_longer_than_the_cap(batcher: Batcher, queue: Queue,
                                                                  mlp_path: Path) -> None:
    """A deployment row written before the cap may say 60 s; the worker waits MAX_QUEUE_DELAY_MS."""
    held = held_for(queue, mlp_path, max_batch_size=8, max_queue_delay_ms=60_000)
    lane = batcher.lanes[0]
    queue.send(1, rows(1, start=0.0))
    batcher.take(lane, [held])
    assert 0 < lane.until[queue.stream] - time.monotonic() <= wire.MAX_QUEUE_DELAY_MS / 1000


def test_after_redis_loses_a_stream_and_its_group_the_batcher_serves_again(
        batcher: Batcher, queue: Queue, mlp_path: Path) -> None:
    """Redis restarted empty: XREADGROUP answers NOGROUP, and the loop recreates the group."""
    batcher.cache.held = {1: held_for(queue, mlp_path)}
    queue.client.delete(queue.stream)
    batcher.start()
    try:
        time.sleep(0.3)  # a few rounds meet NOGROUP
        queue.send(1, rows(1, start=0.0))
        deadline = time.monotonic() + 10
        answers: dict[int, Any] = {}
        while not answers and time.monotonic() < deadline:
            answers = by_rid(queue.messages(timeout=0.2))
    finally:
        batcher.stop()  # before the queue's stream is deleted under it
    assert [(rid, failure(a)[:2]) for rid, a in answers.items()] == [(1, ("", 200))]


def test_requests_of_a_worker_of_this_host_whose_process_is_gone_are_claimed_at_once(
        batcher: Batcher, queue: Queue, client: redis.Redis, mlp_path: Path) -> None:
    """SIGKILL leaves the worker's heartbeat fresh for 5 s; on its own host its pid tells it is
    gone, so its requests need wait neither for that nor for the claim timeout."""
    import socket
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid is free
    queue.send(1, rows(1, start=0.0))
    client.xreadgroup(wire.GROUP, "killed-worker", {queue.stream: ">"})  # just read: idle ~0
    client.hset(wire.workers_key(), "killed-worker",
                wire.pack_heartbeat({"host": socket.gethostname(), "pid": gone.pid, "held": []}))
    assert "killed-worker" not in batcher.live_workers()
    time.sleep(0.3)  # past DEAD_CLAIM_IDLE_MS, far below the claim timeout
    batcher.claim_abandoned([held_for(queue, mlp_path)])
    batcher.flush()
    assert rids(queue.messages()) == [[1]] and queue.pending() == 0
