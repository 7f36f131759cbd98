"""How a worker's batcher forms batches (workers/batcher.py runs them): which jobs share one
run, when a partial batch runs rather than waits, and how many lanes serve a version."""

from collections import defaultdict
from typing import Any

from serving.v2.wire import MAX_QUEUE_DELAY_MS, Job
from workers.cache import Held


def batches(held: Held, jobs: list[Job]) -> list[list[Job]]:
    """Jobs that can share one run: same non-batch shapes, at most max_batch_size rows."""
    limit = held.plan.settings["max_batch_size"]
    if not held.plan.batchable or limit <= 0:
        return [[job] for job in jobs]
    groups: dict[tuple[Any, ...], list[list[Job]]] = defaultdict(list)
    for job in jobs:
        key = tuple((name, array.shape[1:], array.dtype.str) for name, array in sorted(job.inputs.items()))
        chunks = groups[key]
        if not chunks or sum(j.rows for j in chunks[-1]) + job.rows > limit:
            chunks.append([])
        chunks[-1].append(job)
    return [chunk for chunks in groups.values() for chunk in chunks]


def fills(held: Held, entries: list[Any]) -> bool:
    """Whether the entries run now: the version does not wait for fuller batches, or they
    make a full batch or one of its preferred sizes."""
    limit = max(held.plan.settings["max_batch_size"], 1)
    preferred = held.plan.settings.get("preferred_batch_sizes") or ()
    return queue_delay_ms(held) <= 0 or len(entries) >= limit or len(entries) in preferred


def instances_of(held: Held) -> int:
    """The lanes that serve a version: its runtime's copies (1 without)."""
    return held.runtime.instances


def queue_delay_ms(held: Held) -> int:
    """How long a partial batch of the version may wait to fill: its deployment's
    max_queue_delay_ms, never above MAX_QUEUE_DELAY_MS (older rows may hold more)."""
    return min(int(held.plan.settings.get("max_queue_delay_ms") or 0), MAX_QUEUE_DELAY_MS)
