"""The model cache of one worker process: which versions it holds, loaded and warmed up,
evicting the least recently used ones to stay under its memory budget."""

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from registry.models import ModelVersion
from registry.storage import local_artifact
from registry.validation import smoke_inputs
from serving.v2.wire import stream_key
from workers.runtimes import Runtime, load_runtime

logger = logging.getLogger(__name__)

# A version that stops being planned stays held this long after its last batch.
DRAIN_SECONDS = 30.0


@dataclass
class Plan:
    """A version this worker should hold, with the deployment's batching settings."""

    version_id: int
    model: str
    number: int
    batchable: bool
    settings: dict[str, Any]
    sha256: str = ""  # the artifact's identity: a held runtime with another checksum is reloaded
    priority: float = 0.0  # higher survives eviction longer (deployed > wanted)


@dataclass
class Held:
    """A version loaded in this worker: its plan, runtime, memory estimate, stream and counts."""

    plan: Plan
    runtime: Runtime
    estimated_bytes: int
    stream: str
    last_used: float = 0.0  # monotonic time of its last batch; 0: never served
    instances: int = 1  # the deployment's setting it was loaded with (a change reloads it)
    batches: int = 0
    rows: int = 0

    def describe(self) -> dict[str, Any]:
        """What the heartbeat says of this version."""
        return {"id": self.plan.version_id, "model": self.plan.model, "number": self.plan.number,
                "stream": self.stream, "batches": self.batches, "rows": self.rows,
                "provider": self.runtime.provider, "instances": self.runtime.instances}


def _instances(plan: Plan) -> int:
    return max(1, int(plan.settings.get("instances", 1)))


def rendezvous(version_id: int, workers: list[str], count: int) -> list[str]:
    """The `count` workers that should hold a version: highest-random-weight hashing, so every
    worker computes the same answer from the same list of live workers, and a joining or leaving
    worker moves only its share."""
    def weight(worker: str) -> bytes:
        return hashlib.blake2b(f"{version_id}:{worker}".encode(), digest_size=8).digest()

    return sorted(workers, key=weight, reverse=True)[:max(1, count)]


def load_version_runtime(version: ModelVersion, *, instances: int = 1, batchable: bool = True) -> Runtime:
    """A registered version's runtime, from its artifact (fetched from the store when it is not
    on this machine), with this worker's intra-op threads: the batcher's and the shelf's loads."""
    with local_artifact(version) as path:
        return load_runtime(path, fmt=version.format, signature={"inputs": version.inputs, "outputs": version.outputs},
                            intra_op_threads=settings.PADDOCK_INTRA_OP_THREADS, instances=instances,
                            batchable=batchable)


class ModelCache:
    """The versions this worker holds, loaded and warmed up, evicted LRU over the memory budget."""

    def __init__(self, budget_bytes: int | None = None) -> None:
        self.budget = budget_bytes or settings.PADDOCK_WORKER_MEMORY_MB * 1024 * 1024
        self.held: dict[int, Held] = {}
        self.left_out: set[int] = set()  # planned versions the budget keeps out (logged once)

    def sync(self, plans: list[Plan]) -> list[int]:
        """Hold what is planned (as far as the budget allows), and for a while what served
        traffic recently, so that requests already queued for it drain; return ids newly loaded."""
        wanted = {plan.version_id: plan for plan in plans}
        draining = time.monotonic() - DRAIN_SECONDS
        for version_id in [v for v, h in self.held.items() if v not in wanted and h.last_used < draining]:
            logger.info("unloading version %s", version_id)
            del self.held[version_id]
        loaded = []
        for plan in sorted(plans, key=lambda p: -p.priority):
            current = self.held.get(plan.version_id)
            if current is not None and current.plan.sha256 != plan.sha256:
                current = None  # the id now names other bytes (a database restored or reset)
            if current is not None and current.instances != _instances(plan):
                logger.info("reloading version %s with %s instance(s)", plan.version_id, _instances(plan))
                current = None
            if current is not None:
                current.plan = plan  # batching settings take effect without a reload
                continue
            if not self._fits(plan):
                continue
            try:
                self.held[plan.version_id] = self._load(plan)
                loaded.append(plan.version_id)
            except Exception:  # noqa: BLE001 - one bad version must not stop the worker
                logger.exception("could not load version %s", plan.version_id)
        self._evict()
        return [version_id for version_id in loaded if version_id in self.held]

    def _fits(self, plan: Plan) -> bool:
        """Whether a new load would stay: eviction takes a fresh load first among its priority,
        so loading one that cannot fit beside the versions of its priority or above would only
        stall the batcher's thread to evict it again, every plan. A version alone is always held."""
        size = ModelVersion.objects.filter(pk=plan.version_id).values_list("size", flat=True).first() or 0
        instances = _instances(plan)
        estimate = 2 * size * (1 + (instances if instances > 1 else 0))  # as _load estimates it
        kept = sum(h.estimated_bytes for h in self.held.values() if h.plan.priority >= plan.priority)
        if kept == 0 or kept + estimate <= self.budget:
            self.left_out.discard(plan.version_id)
            return True
        if plan.version_id not in self.left_out:
            self.left_out.add(plan.version_id)
            logger.warning("memory budget: not loading %s v%s (about %d bytes; %d of %d held at its priority "
                           "or above)", plan.model, plan.number, estimate, kept, self.budget)
        return False

    def _load(self, plan: Plan) -> Held:
        version = ModelVersion.objects.select_related("model").get(pk=plan.version_id)
        started = time.perf_counter()
        runtime = load_version_runtime(version, instances=_instances(plan), batchable=plan.batchable)
        runtime.run(smoke_inputs(version.inputs, batch=1))  # warm up before reporting ready
        copies = runtime.instances if runtime.instances > 1 else 0
        for instance in range(copies):  # and each copy
            runtime.run(smoke_inputs(version.inputs, batch=copies), instance=instance)
        logger.info("loaded %s v%s on %s in %.0f ms", plan.model, plan.number, runtime.provider,
                    (time.perf_counter() - started) * 1000)
        # Weights dominate; twice the artifact covers the runtime's working buffers.
        # ONNX with instances: the full session and each copy hold the weights.
        return Held(plan, runtime, 2 * version.size * (1 + copies), stream_key(plan.version_id, plan.sha256),
                    instances=_instances(plan))

    def _evict(self) -> None:
        total = sum(h.estimated_bytes for h in self.held.values())
        victims = sorted(self.held.values(), key=lambda h: (h.plan.priority, h.last_used))
        while total > self.budget and len(victims) > 1:
            victim = victims.pop(0)
            logger.warning("memory budget: evicting %s v%s", victim.plan.model, victim.plan.number)
            del self.held[victim.plan.version_id]
            total -= victim.estimated_bytes
