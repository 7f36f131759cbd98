"""How the batcher forms batches (the loop itself runs in tests/integration)."""

from typing import Any

import numpy as np

from serving.v2.wire import Job
from workers.batcher import Batcher
from workers.cache import Held, Plan, rendezvous


def job(rid: int, rows: int, width: int = 2) -> Job:
    return Job(f"{rid}-0".encode(), rid, "reply", 0, 0, 0, {"x": np.zeros((rows, width), np.float32)}, rows)


def held(max_batch_size: int, batchable: bool = True) -> Held:
    plan = Plan(1, "m", 1, batchable, {"max_batch_size": max_batch_size})
    runtime: Any = None
    return Held(plan, runtime, 0, "s")


def test_jobs_share_a_batch_up_to_max_batch_size_rows() -> None:
    jobs = [job(1, 3), job(2, 3), job(3, 3)]
    assert [[j.rid for j in b] for b in Batcher.batches(held(6), jobs)] == [[1, 2], [3]]


def test_jobs_with_other_inner_shapes_run_in_their_own_batch() -> None:
    jobs = [job(1, 1), job(2, 1, width=3), job(3, 1)]
    assert [[j.rid for j in b] for b in Batcher.batches(held(8), jobs)] == [[1, 3], [2]]


def test_without_a_batch_axis_or_with_max_batch_size_0_jobs_run_one_by_one() -> None:
    jobs = [job(1, 1), job(2, 1)]
    assert [[j.rid for j in b] for b in Batcher.batches(held(0), jobs)] == [[1], [2]]
    assert [[j.rid for j in b] for b in Batcher.batches(held(8, batchable=False), jobs)] == [[1], [2]]


def test_rendezvous_is_stable_and_moves_little_when_a_worker_joins() -> None:
    workers = ["a", "b", "c"]
    assert rendezvous(7, workers, 1) == rendezvous(7, list(reversed(workers)), 1)
    assert len(rendezvous(7, workers, 2)) == 2 and rendezvous(7, workers, 9) == rendezvous(7, workers, 3)
    before = {v: rendezvous(v, workers, 1)[0] for v in range(200)}
    after = {v: rendezvous(v, [*workers, "d"], 1)[0] for v in range(200)}
    moved = [v for v in before if before[v] != after[v]]
    assert all(after[v] == "d" for v in moved) and len(moved) < 100


def test_the_refreshing_cache_shares_loads_and_never_serves_values_older_than_twice_its_ttl() -> None:
    import asyncio
    import time

    from serving.v2.cache import RefreshingCache

    loads: list[str] = []

    async def load(key: str) -> str:
        loads.append(key)
        await asyncio.sleep(0.01)
        return f"{key}-{len(loads)}"

    async def scenario() -> None:
        cache: RefreshingCache[str, str] = RefreshingCache(load, ttl=0.05)
        assert await asyncio.gather(*(cache.get("a") for _ in range(20))) == ["a-1"] * 20  # one shared load
        await asyncio.sleep(0.06)  # stale but within the grace: served while one reload runs
        assert await cache.get("a") == "a-1"
        await asyncio.sleep(0.02)
        assert await cache.get("a") == "a-2"
        await asyncio.sleep(0.15)  # older than 2 × ttl: the caller waits for the reload
        started = time.monotonic()
        assert await cache.get("a") == "a-3" and time.monotonic() - started >= 0.009

    asyncio.run(scenario())
    assert loads == ["a", "a", "a"]


def test_each_batch_s_replies_leave_before_the_next_batch_runs() -> None:
    """Entries can make several batches (claimed ones; rows of other inner shapes; here a read
    of 64 with max_batch_size 1): the first batch's caller must not wait for the last batch to
    run. Real Redis; the runtime is a stand-in that looks, before each run, at what was
    published."""
    import uuid

    import msgpack
    import redis
    from django.conf import settings

    from serving.v2.wire import GROUP, pack_request, pack_tensor

    client = redis.Redis.from_url(settings.REDIS_URL)
    stream = f"{settings.PADDOCK_REDIS_PREFIX}:batching-test:{uuid.uuid4().hex}"
    channel = f"{stream}:reply"
    subscriber = client.pubsub()
    subscriber.subscribe(channel)
    assert subscriber.get_message(timeout=5)["type"] == "subscribe"
    client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    for rid in (1, 2, 3):
        x = np.full((1, 2), rid, np.float32)
        client.xadd(stream, {"m": pack_request(rid=rid, reply_to=channel, deadline_ms=2**62, priority=0, rows=1,
                                               tensors=[pack_tensor("x", "FP32", x)])})
    answered_before_run: list[list[int]] = []

    def answered() -> list[int]:
        rids: list[int] = []
        while (message := subscriber.get_message(timeout=0.2)) is not None:
            rids.extend(reply["r"] for reply in msgpack.unpackb(message["data"]))
        return rids

    class Runtime:
        name, provider, version, instances = "test", "test", "0", 1
        seen: list[int] = []

        def run(self, feed: dict[str, np.ndarray], instance: int | None = None) -> dict[str, np.ndarray]:
            self.seen.extend(answered())
            answered_before_run.append(list(self.seen))
            return {"y": feed["x"] * 2}

    batcher = Batcher(consumer="batching-test")
    version = Held(Plan(1, "m", 1, True, {"max_batch_size": 1}), Runtime(), 0, stream)
    try:
        entries = batcher.read([stream], count=64, block=100)[0][1]
        assert len(entries) == 3  # one read, three one-row batches
        batcher.serve(version, entries)
        batcher.flush()
        assert answered_before_run == [[], [1], [1, 2]]
        assert answered() == [3]
        assert client.xlen(stream) == 0  # every entry acknowledged and deleted
    finally:
        subscriber.close()
        client.delete(stream)


def test_a_round_takes_no_more_of_a_version_s_queue_than_its_next_batch_runs() -> None:
    """One blocking read covers every held stream with one COUNT. With versions of
    max_batch_size 4 and 1 held, the second must not have 4 entries taken (they would wait
    behind this worker's runs while another worker idles), and the first still gets its batch
    of 4. Real Redis; stand-in runtimes record the rows of each run."""
    import uuid

    import redis
    from django.conf import settings

    from serving.v2.wire import GROUP, pack_request, pack_tensor

    client = redis.Redis.from_url(settings.REDIS_URL)
    prefix = f"{settings.PADDOCK_REDIS_PREFIX}:batching-test:{uuid.uuid4().hex}"
    wide, narrow = f"{prefix}:wide", f"{prefix}:narrow"
    for stream, queued in ((wide, 4), (narrow, 3)):
        client.xgroup_create(stream, GROUP, id="0", mkstream=True)
        for rid in range(queued):
            x = np.zeros((1, 2), np.float32)
            client.xadd(stream, {"m": pack_request(rid=rid, reply_to=f"{prefix}:reply", deadline_ms=2**62,
                                                   priority=0, rows=1, tensors=[pack_tensor("x", "FP32", x)])})

    class Runtime:
        name, provider, version, instances = "test", "test", "0", 1

        def __init__(self) -> None:
            self.runs: list[int] = []

        def run(self, feed: dict[str, np.ndarray], instance: int | None = None) -> dict[str, np.ndarray]:
            self.runs.append(len(feed["x"]))
            return {"y": feed["x"]}

    batcher = Batcher(consumer="batching-test")
    settings_of = {"max_queue_delay_ms": 0}
    runtimes = {wide: Runtime(), narrow: Runtime()}
    batcher.cache.held = {
        1: Held(Plan(1, "wide", 1, True, {**settings_of, "max_batch_size": 4}), runtimes[wide], 0, wide),
        2: Held(Plan(2, "narrow", 1, True, {**settings_of, "max_batch_size": 1}), runtimes[narrow], 0, narrow),
    }
    batcher.next_plan = batcher.next_claim = float("inf")  # no planning, no claims: just the round
    try:
        batcher.step()
        batcher.flush()
        assert runtimes[wide].runs == [4]
        assert runtimes[narrow].runs == [1]
        assert client.xlen(narrow) == 2 and client.xpending(narrow, GROUP)["pending"] == 0  # left for anyone
        assert client.xlen(wide) == 0
    finally:
        client.delete(wide, narrow)


def test_a_version_with_two_instances_runs_two_batches_at_once_one_per_lane() -> None:
    """Lane 0 (the batcher's thread, step) and lane 1 (started for the version's second
    instance) each take a batch of their own from the stream and run it on their own instance:
    each run waits at a barrier that only opens while both are running. Real Redis; a stand-in
    runtime records the instance of each run."""
    import threading
    import time
    import uuid

    import msgpack
    import redis
    from django.conf import settings

    from serving.v2.wire import GROUP, pack_request, pack_tensor

    client = redis.Redis.from_url(settings.REDIS_URL)
    stream = f"{settings.PADDOCK_REDIS_PREFIX}:batching-test:{uuid.uuid4().hex}"
    channel = f"{stream}:reply"
    subscriber = client.pubsub()
    subscriber.subscribe(channel)
    assert subscriber.get_message(timeout=5)["type"] == "subscribe"
    client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    for rid in (1, 2):
        client.xadd(stream, {"m": pack_request(rid=rid, reply_to=channel, deadline_ms=2**62, priority=0, rows=1,
                                               tensors=[pack_tensor("x", "FP32", np.full((1, 2), rid, np.float32))])})
    both_running = threading.Barrier(2, timeout=10)

    class Runtime:
        name, provider, version, instances = "test", "test", "0", 2

        def __init__(self) -> None:
            self.runs: list[tuple[int, float]] = []

        def run(self, feed: dict[str, np.ndarray], instance: int | None = None) -> dict[str, np.ndarray]:
            both_running.wait()
            assert instance is not None
            self.runs.append((instance, float(feed["x"][0, 0])))
            return {"y": feed["x"] * 2}

    runtime = Runtime()
    batcher = Batcher(consumer="batching-test")
    batcher.cache.held = {1: Held(Plan(1, "m", 1, True, {"max_batch_size": 1, "max_queue_delay_ms": 0}),
                                  runtime, 0, stream)}
    batcher.next_plan = batcher.next_claim = float("inf")
    try:
        batcher.ensure_lanes()
        assert [lane.index for lane in batcher.lanes] == [0, 1]
        replies: dict[int, Any] = {}
        deadline = time.monotonic() + 10
        while len(replies) < 2 and time.monotonic() < deadline:
            batcher.step()
            batcher.flush()
            while (message := subscriber.get_message(timeout=0.1)) is not None:
                replies.update((reply["r"], reply) for reply in msgpack.unpackb(message["data"]))
        assert sorted(replies) == [1, 2]
        assert sorted(instance for instance, _ in runtime.runs) == [0, 1]  # one batch per lane
        assert sorted(value for _, value in runtime.runs) == [1.0, 2.0]
        assert client.xlen(stream) == 0  # both entries acknowledged and deleted
        assert batcher.cache.held[1].batches == 2 and batcher.cache.held[1].rows == 2
    finally:
        batcher.stop()
        subscriber.close()
        client.delete(stream)
