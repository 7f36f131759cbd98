"""Which worker holds what: each batcher plans from the registry (deployed and wanted ready
versions) and the live workers' heartbeats, by rendezvous hashing with min_workers each. Real
PostgreSQL, Redis and onnxruntime; the batchers run their planning step by hand."""

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import redis
from django.db import transaction

from console.audit import Actor
from registry import services
from registry.models import ModelVersion
from serving.models import Deployment
from serving.v2 import wire
from tests.conftest import ready_version
from tests.workers.conftest import Queue, mlp_expected, outputs_of, rows
from workers.batcher import WANTED_TTL_SECONDS, Batcher
from workers.cache import rendezvous

# Planning closes stale database connections (close_old_connections), which a test's open
# transaction would not survive: these tests commit, and the tables are emptied after each.
pytestmark = pytest.mark.django_db(transaction=True)

Deploy = Callable[..., list[ModelVersion]]


@pytest.fixture
def deploy(teams: dict[str, Any]) -> Deploy:
    """`count` models, each with one ready version deployed with the given settings."""

    def make(count: int, **deployment: Any) -> list[ModelVersion]:
        versions = []
        with transaction.atomic():  # ready when committed: a validation queued meanwhile finds nothing to do
            for index in range(count):
                model = services.create_model(actor=Actor.system("tests"), name=f"planned-{index}", team=teams["ml"])
                version = ready_version(model, index)
                Deployment.objects.create(model=model, active_version=version, **deployment)
                versions.append(version)
        return versions

    return make


@pytest.fixture
def batchers(client: redis.Redis) -> Iterator[Callable[[str], Batcher]]:
    made: list[Batcher] = []

    def make(name: str) -> Batcher:
        batcher = Batcher(consumer=name)
        batcher.next_plan = batcher.next_claim = float("inf")
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        batcher.stop()


def heartbeats(client: redis.Redis) -> dict[str, dict[str, Any]]:
    return wire.fresh_heartbeats(client.hgetall(wire.workers_key()))


def test_live_workers_share_the_deployed_versions_one_worker_each(
        deploy: Deploy, batchers: Callable[[str], Batcher], client: redis.Redis) -> None:
    ids = {v.pk for v in deploy(8)}
    a, b = batchers("planner-a"), batchers("planner-b")
    a.plan()
    assert set(a.cache.held) == ids  # alone, it holds everything
    b.plan()  # sees a's heartbeat
    a.plan()  # sees b's: lets go of b's share
    mine = {v for v in ids if rendezvous(v, ["planner-a", "planner-b"], 1) == ["planner-a"]}
    assert set(a.cache.held) == mine and set(b.cache.held) == ids - mine
    beats = heartbeats(client)
    assert sorted(beats) == ["planner-a", "planner-b"]
    assert {h["id"] for h in beats["planner-a"]["held"]} == mine


def test_with_min_workers_2_each_version_is_held_by_two_workers(
        deploy: Deploy, batchers: Callable[[str], Batcher]) -> None:
    ids = {v.pk for v in deploy(4, min_workers=2)}
    a, b, c = batchers("planner-a"), batchers("planner-b"), batchers("planner-c")
    for batcher in (a, b, c, a, b):  # until each has seen the others' heartbeats
        batcher.plan()
    holders = {v: sorted(x.consumer for x in (a, b, c) if v in x.cache.held) for v in ids}
    assert holders == {v: sorted(rendezvous(v, ["planner-a", "planner-b", "planner-c"], 2)) for v in ids}


def test_the_versions_of_a_worker_that_stops_move_to_the_others(
        deploy: Deploy, batchers: Callable[[str], Batcher], client: redis.Redis) -> None:
    ids = {v.pk for v in deploy(6)}
    a, b = batchers("planner-a"), batchers("planner-b")
    for batcher in (a, b, a):
        batcher.plan()
    b.stop()  # takes its heartbeat away
    assert sorted(heartbeats(client)) == ["planner-a"]
    a.plan()
    assert set(a.cache.held) == ids


def test_a_wanted_version_is_held_until_the_ask_expires(teams: dict[str, Any], client: redis.Redis,
                                                        batchers: Callable[[str], Batcher]) -> None:
    with transaction.atomic():
        model = services.create_model(actor=Actor.system("tests"), name="asked", team=teams["ml"])
        v1, v2, v3 = (ready_version(model, seed) for seed in (1, 2, 3))
        ModelVersion.objects.filter(pk=v3.pk).update(status="failed")
        Deployment.objects.create(model=model, active_version=v1)
    client.zadd(wire.wanted_key(), {str(v2.pk): time.time(), str(v3.pk): time.time()})
    batcher = batchers("planner-a")
    batcher.plan()
    assert sorted(batcher.cache.held) == [v1.pk, v2.pk]  # v3 failed validation: never loaded
    assert [h.plan.priority for h in sorted(batcher.cache.held.values(), key=lambda h: h.plan.number)] == [1.0, 0.0]
    client.zadd(wire.wanted_key(), {str(v2.pk): time.time() - WANTED_TTL_SECONDS - 1})
    batcher.plan()
    assert list(batcher.cache.held) == [v1.pk]
    assert client.zrange(wire.wanted_key(), 0, -1) == [str(v3.pk).encode()]  # expired asks are removed


def test_requests_queued_before_any_worker_held_the_version_are_served(
        deploy: Deploy, batchers: Callable[[str], Batcher], client: redis.Redis) -> None:
    (version,) = deploy(1)
    queue = Queue(client, stream=wire.stream_key(version.pk, version.sha256))
    try:
        x = rows(2, start=1.0)
        queue.send(7, x)  # XADD made the stream; no consumer group yet
        batcher = batchers("planner-a")
        batcher.plan()
        batcher.step()
        batcher.flush()
        (message,) = queue.messages()
        assert [answer[wire.RID] for answer in message] == [7] and message[0][wire.KIND] == ""
        np.testing.assert_allclose(outputs_of(message[0])["probs"], mlp_expected(x, seed=0), rtol=1e-5, atol=1e-6)
    finally:
        queue.close()


def test_the_heartbeat_says_what_the_worker_holds_and_instances_start_lanes(
        deploy: Deploy, batchers: Callable[[str], Batcher], client: redis.Redis) -> None:
    (version,) = deploy(1, instances=2)
    batcher = batchers("planner-a")
    batcher.plan()
    beat = heartbeats(client)["planner-a"]
    assert (beat["pid"], beat["held"]) == (os.getpid(), [{
        "id": version.pk, "model": "planned-0", "number": 1, "stream": wire.stream_key(version.pk, version.sha256),
        "batches": 0, "rows": 0, "provider": "CPUExecutionProvider", "instances": 2}])
    assert beat["rss"] > 0 and time.time() - beat["ts"] < 5
    assert [lane.index for lane in batcher.lanes] == [0, 1]


def test_planning_more_than_the_memory_budget_still_publishes_the_heartbeat(
        deploy: Deploy, batchers: Callable[[str], Batcher], client: redis.Redis) -> None:
    """Two deployed versions, room for one: the cache loads both and evicts one; planning must
    still create the groups of what it holds and announce the worker (a worker that stops
    heartbeating is taken for dead by the others)."""
    versions = deploy(2)
    batcher = batchers("planner-a")
    batcher.cache.budget = 2 * max(v.size for v in versions)  # one fits
    batcher.plan()
    assert len(batcher.cache.held) == 1
    assert [h["id"] for h in heartbeats(client)["planner-a"]["held"]] == list(batcher.cache.held)
