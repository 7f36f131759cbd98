"""Runtimes for work beside the batcher (batch-job chunks, stream scoring): the batcher's own
session when this worker holds the version (one copy of the weights, and onnxruntime's sessions
take concurrent runs), else one loaded here, the least recently used dropped past `size`."""

import threading
from collections import OrderedDict
from typing import Any

from registry.models import ModelVersion
from workers.cache import load_version_runtime
from workers.runtimes import Runtime


def running_batcher() -> Any:
    """This process's batcher (workers/bootsteps.py), or None where the worker does not serve."""
    from workers import bootsteps

    return bootsteps.running_batcher


class Shelf:
    """Runtimes by (version id, sha256): the batcher's when it holds it, else loaded and kept here."""

    def __init__(self, size: int = 1) -> None:
        self.size = size
        self.loaded: OrderedDict[tuple[int, str], Runtime] = OrderedDict()
        self.lock = threading.Lock()

    def runtime(self, version_id: int, sha256: str) -> Runtime:
        """The version's runtime, loading it here if the batcher does not hold it."""
        batcher = running_batcher()
        if batcher is not None:
            held = batcher.cache.held.get(version_id)
            if held is not None and held.plan.sha256 == sha256:
                return held.runtime
        key = (version_id, sha256)
        with self.lock:
            if key in self.loaded:
                self.loaded.move_to_end(key)
                return self.loaded[key]
            runtime = load_version_runtime(ModelVersion.objects.get(pk=version_id))
            self.loaded[key] = runtime
            while len(self.loaded) > self.size:
                self.loaded.popitem(last=False)
            return runtime


def online_busy(recent_seconds: float) -> bool:
    """Whether this worker's batcher served an online batch in the last `recent_seconds`."""
    import time

    batcher = running_batcher()
    if batcher is None:
        return False
    since = time.monotonic() - recent_seconds
    return any(held.last_used > since for held in list(batcher.cache.held.values()))
