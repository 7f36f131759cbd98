"""The model cache of one worker: loads ready versions from the registry into a runtime, reloads
on a change of instances or bytes, keeps what drains, and evicts under its memory budget. Real
PostgreSQL, real onnxruntime (who holds what across workers: tests/workers/test_planning.py)."""

import logging
import time
from collections import Counter
from typing import Any

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from console.audit import Actor
from registry import services
from registry.models import ModelVersion, RegisteredModel
from tests import models as built
from tests.conftest import ready_version
from tests.workers.conftest import mlp_expected, rows
from workers.cache import DRAIN_SECONDS, ModelCache, Plan, rendezvous


@pytest.fixture
def model(teams: dict[str, Any]) -> RegisteredModel:
    return services.create_model(actor=Actor.system("tests"), name="cached", team=teams["ml"])


@pytest.fixture
def versions(model: RegisteredModel) -> list[ModelVersion]:
    """Three ready versions of the same size, v1 to v3 built with seeds 1 to 3."""
    return [ready_version(model, seed) for seed in (1, 2, 3)]


def plan(version: ModelVersion, *, priority: float = 1.0, sha256: str = "", **overrides: Any) -> Plan:
    batching = {"max_batch_size": 8, "max_queue_delay_ms": 0, "instances": 1, **overrides}
    return Plan(version.pk, version.model.name, version.number, True, batching, sha256=sha256 or version.sha256,
                priority=priority)


def test_a_planned_version_is_loaded_on_its_stream_and_answers_as_its_model(versions: list[ModelVersion]) -> None:
    v1 = versions[0]
    cache = ModelCache()
    assert cache.budget == settings.PADDOCK_WORKER_MEMORY_MB * 1024 * 1024
    assert cache.sync([plan(v1)]) == [v1.pk]
    held = cache.held[v1.pk]
    assert held.stream == f"{settings.PADDOCK_REDIS_PREFIX}:v{v1.pk}-{v1.sha256[:12]}:requests"
    assert (held.estimated_bytes, held.instances, held.last_used) == (2 * v1.size, 1, 0.0)
    assert held.describe() == {"id": v1.pk, "model": "cached", "number": 1, "stream": held.stream, "batches": 0,
                               "rows": 0, "provider": "CPUExecutionProvider", "instances": 1}
    x = rows(3, start=0.0)
    np.testing.assert_allclose(held.runtime.run({"x": x})["probs"], mlp_expected(x, seed=1), rtol=1e-5, atol=1e-6)


def test_the_same_plan_again_keeps_the_runtime_and_takes_new_batching_settings(
        versions: list[ModelVersion]) -> None:
    v1 = versions[0]
    cache = ModelCache()
    cache.sync([plan(v1)])
    runtime = cache.held[v1.pk].runtime
    assert cache.sync([plan(v1, max_batch_size=32, max_queue_delay_ms=5)]) == []
    assert cache.held[v1.pk].runtime is runtime
    assert cache.held[v1.pk].plan.settings == {"max_batch_size": 32, "max_queue_delay_ms": 5, "instances": 1}


def test_a_change_of_instances_reloads_the_version_with_that_many_copies(versions: list[ModelVersion]) -> None:
    v1 = versions[0]
    cache = ModelCache()
    cache.sync([plan(v1)])
    single = cache.held[v1.pk].runtime
    assert cache.sync([plan(v1, instances=2)]) == [v1.pk]
    held = cache.held[v1.pk]
    runtime: Any = held.runtime
    assert runtime is not single and (runtime.instances, len(runtime.copies), held.instances) == (2, 2, 2)
    assert held.estimated_bytes == 2 * v1.size * 3  # the full session and two copies hold the weights
    assert held.describe()["instances"] == 2
    assert cache.sync([plan(v1, instances=1)]) == [v1.pk]
    reloaded: Any = cache.held[v1.pk].runtime
    assert (reloaded.instances, reloaded.copies) == (1, [])


def test_other_bytes_under_the_same_id_are_reloaded_on_their_own_stream(versions: list[ModelVersion]) -> None:
    """A restored or reset database can give a version's id to other bytes."""
    v1 = versions[0]
    cache = ModelCache()
    cache.sync([plan(v1)])
    runtime = cache.held[v1.pk].runtime
    assert cache.sync([plan(v1, sha256="ab" * 32)]) == [v1.pk]
    assert cache.held[v1.pk].runtime is not runtime
    assert cache.held[v1.pk].stream == f"{settings.PADDOCK_REDIS_PREFIX}:v{v1.pk}-abababababab:requests"


def test_a_version_no_longer_planned_stays_while_queued_requests_drain(versions: list[ModelVersion]) -> None:
    v1, v2, v3 = versions
    cache = ModelCache()
    cache.sync([plan(v) for v in versions])
    now = time.monotonic()
    cache.held[v1.pk].last_used = now - DRAIN_SECONDS + 5  # its last batch ran 25 s ago
    cache.held[v2.pk].last_used = now - DRAIN_SECONDS - 1  # 31 s ago
    # v3 never served a batch
    assert cache.sync([]) == []
    assert list(cache.held) == [v1.pk]
    cache.held[v1.pk].last_used = time.monotonic() - DRAIN_SECONDS - 1
    cache.sync([])
    assert cache.held == {}


def test_over_budget_the_least_recently_used_version_is_evicted(versions: list[ModelVersion]) -> None:
    v1, v2, v3 = versions
    cache = ModelCache()
    cache.sync([plan(v) for v in versions])
    now = time.monotonic()
    for version, ago in ((v1, 1), (v2, 20), (v3, 5)):
        cache.held[version.pk].last_used = now - ago
    cache.budget = cache.held[v1.pk].estimated_bytes + cache.held[v3.pk].estimated_bytes  # two fit
    assert cache.sync([plan(v) for v in versions]) == []
    assert sorted(cache.held) == [v1.pk, v3.pk]


def test_a_deployed_version_outlives_wanted_ones_used_more_recently(versions: list[ModelVersion]) -> None:
    v1, v2, v3 = versions
    cache = ModelCache()
    plans = [plan(v1, priority=1.0), plan(v2, priority=0.0), plan(v3, priority=0.0)]
    cache.sync(plans)
    now = time.monotonic()
    for version, ago in ((v1, 25), (v2, 1), (v3, 2)):
        cache.held[version.pk].last_used = now - ago
    cache.budget = cache.held[v1.pk].estimated_bytes  # one fits
    cache.sync(plans)
    assert list(cache.held) == [v1.pk]


def test_a_version_larger_than_the_whole_budget_is_still_held(versions: list[ModelVersion]) -> None:
    cache = ModelCache(budget_bytes=1)
    cache.sync([plan(versions[0])])
    assert list(cache.held) == [versions[0].pk]


def test_a_version_that_cannot_load_does_not_stop_the_others(model: RegisteredModel, versions: list[ModelVersion],
                                                             caplog: pytest.LogCaptureFixture) -> None:
    broken, _ = services.register_version(actor=Actor.system("tests"), model=model,
                                          upload=SimpleUploadedFile("broken.onnx", built.broken_onnx()))
    missing = Plan(10**9, "gone", 1, True, {"max_batch_size": 8}, sha256="00" * 32)
    cache = ModelCache()
    with caplog.at_level(logging.ERROR, logger="workers.cache"):
        assert cache.sync([plan(broken), missing, plan(versions[0])]) == [versions[0].pk]
    assert list(cache.held) == [versions[0].pk]
    assert [r.getMessage() for r in caplog.records] == [f"could not load version {broken.pk}",
                                                       f"could not load version {10**9}"]


def test_sync_reports_as_loaded_only_versions_it_still_holds(versions: list[ModelVersion]) -> None:
    """The batcher creates the consumer groups of what sync reports loaded by looking each one up
    in `held` (workers/batcher.py, Batcher.plan): a version loaded and then evicted within the same
    sync must not be reported."""
    v1, v2, _ = versions
    cache = ModelCache(budget_bytes=2 * v1.size)  # one fits
    loaded = cache.sync([plan(v1, priority=1.0), plan(v2, priority=0.0)])
    assert list(cache.held) == [v1.pk]
    assert loaded == [v1.pk]


def test_a_planned_version_that_does_not_fit_is_not_loaded_again_at_every_sync(
        versions: list[ModelVersion], caplog: pytest.LogCaptureFixture) -> None:
    """The batcher syncs every second on its serving thread: loading and warming up a version
    only to evict it again would stall serving and overshoot the budget each time."""
    v1, v2, _ = versions
    cache = ModelCache(budget_bytes=2 * v1.size)  # one fits
    plans = [plan(v1, priority=1.0), plan(v2, priority=0.0)]
    cache.sync(plans)  # loads both, evicts v2
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="workers.cache"):
        for _ in range(3):
            cache.sync(plans)
    assert list(cache.held) == [v1.pk]
    assert [r.getMessage().split(" on ")[0] for r in caplog.records if r.getMessage().startswith("loaded")] == []


def test_rendezvous_names_at_least_one_worker_and_at_most_every_live_one() -> None:
    workers = ["w1", "w2", "w3"]
    assert len(rendezvous(5, workers, 0)) == 1
    assert rendezvous(5, workers, 0) == rendezvous(5, workers, 1)
    assert sorted(rendezvous(5, workers, 10)) == workers
    assert rendezvous(5, workers, 2) == rendezvous(5, workers, 3)[:2]  # a higher count only adds workers


def test_rendezvous_spreads_versions_evenly_over_workers() -> None:
    workers = ["w1", "w2", "w3"]
    shares = Counter(rendezvous(version_id, workers, 1)[0] for version_id in range(1, 601))
    assert sorted(shares) == workers
    assert all(150 <= count <= 250 for count in shares.values()), shares
