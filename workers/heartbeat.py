"""The worker's heartbeat, on a thread and a Redis connection of its own: a long batch, a model
load or a batch waiting to fill never delays it, so web processes and other workers never take a
busy worker for a dead one (serving.v2.wire.HEARTBEAT_FRESH_SECONDS).

The same thread watches the worker's memory: past PADDOCK_WORKER_MAX_RSS_MB of resident memory
(long-running processes fragment and leak), the batcher is asked to recycle: it stops taking
batches, finishes and answers what it holds, and the worker exits to be started again by its
supervisor (workers/bootsteps.py, console/supervisor.py)."""

import logging
import os
import socket
import threading
from typing import TYPE_CHECKING

import redis
from django.conf import settings

from serving.v2.wire import pack_heartbeat, workers_key
from workers.devices import CpuMeter, GpuMeter, resident_bytes

if TYPE_CHECKING:
    from workers.batcher import Batcher

logger = logging.getLogger(__name__)

INTERVAL_SECONDS = 1.0


class Heartbeat:
    """Publishes what the batcher's worker is and holds once a second, and recycles it past its memory limit."""

    def __init__(self, batcher: "Batcher", redis_url: str) -> None:
        self.batcher = batcher
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2,
                                          health_check_interval=10)
        self.cpu = CpuMeter()
        self.gpu = GpuMeter()
        self.lock = threading.Lock()  # the planning thread beats too, right after a load
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self.limit = settings.PADDOCK_WORKER_MAX_RSS_MB * 1024 * 1024

    def start(self) -> None:
        """Beat now and then once a second on a daemon thread."""
        self.thread = threading.Thread(target=self.run, name="paddock-heartbeat", daemon=True)
        self.thread.start()

    def run(self) -> None:
        """Beat and watch memory until stopped, outliving Redis outages."""
        while not self.stopped.is_set():
            try:
                self.beat()
            except redis.RedisError as exc:
                logger.warning("could not publish the heartbeat (%s); retrying", exc)
            self.watch_memory()
            self.stopped.wait(INTERVAL_SECONDS)

    def stop(self) -> None:
        """Stop beating and leave the workers hash, so that others stop counting on this worker at once."""
        self.stopped.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=5)
        try:
            self.redis.hdel(workers_key(), self.batcher.consumer)
        except redis.RedisError:
            pass

    def beat(self) -> None:
        """Publish what this worker is and holds: host, pid, memory, CPU, GPUs, versions and their counts."""
        with self.lock:
            if self.stopped.is_set():
                return
            beat = {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "rss": resident_bytes(),
                "cpu": self.cpu.percent(),
                "gpus": self.gpu.read(),
                "held": [h.describe() for h in list(self.batcher.cache.held.values())],
                "jobs_queue": self.batcher.jobs_queue,
            }
            self.redis.hset(workers_key(), self.batcher.consumer, pack_heartbeat(beat))

    def watch_memory(self) -> None:
        """Past the memory limit (once the worker has served a batch: a limit below what a fresh
        worker needs would otherwise restart it before it ever answers), recycle the worker."""
        if not self.limit or self.batcher.recycling.is_set():
            return
        rss = resident_bytes()
        if rss > self.limit and self.batcher.batches_run:
            self.batcher.recycle(f"resident memory {rss / 2**20:.0f} MiB is above PADDOCK_WORKER_MAX_RSS_MB="
                                 f"{self.limit // 2**20}")
