"""How the batcher forms batches (the loop itself runs in tests/integration)."""

from typing import Any

import numpy as np

from serving.wire import Job
from workers.batcher import Batcher
from workers.cache import Held, Plan, rendezvous


def job(rid: int, rows: int, width: int = 2) -> Job:
    return Job(f"{rid}-0", rid, "reply", 0, 0, 0, {"x": np.zeros((rows, width), np.float32)}, rows)


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

    from serving.cache import RefreshingCache

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
