"""The stream bindings of a worker: a thread beside the batcher that scores every active binding
(serving.models.StreamBinding) with a StreamScorer over a RedisStreamSource, wired to the
deployment the way REST is:

1. Once a second: read the active bindings and their models' routes from the database (while it
   is unreachable, go on with the last good ones); start a scorer for a new or changed binding,
   stop one paused or deleted.
2. Each round: one `step` per binding (reading up to its batch_size messages at once: that is
   the dynamic batching), the version per message chosen by the deployment's split (an A/B
   deployment's sticky key read from the message field of that name), the shadow version run on
   the deployment's share of batches, compared with the live answers.
3. Once a second: each answered message in its version's live figures (serving.livestats, as a
   web process counts a request: the charts, rollups and rollout gates see stream traffic), and
   each binding's lag and what its scorer did (serving.streams.status), to Redis.

The consumer name is the worker's (host and pid), so a SIGKILLed worker's pending messages are
claimed by the others, or by the worker started in its place, after PADDOCK_STREAM_CLAIM_IDLE_MS."""

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis
from django.conf import settings
from django.db import close_old_connections

from console.errors import ModelNotReady
from serving.livestats import LiveStats
from serving.models import BindingState, StreamBinding
from serving.streams import status
from serving.v2 import traffic
from serving.v2.outage import DATABASE_DOWN, OutageLog
from serving.v2.routes import ModelRoute, load_routes
from workers.shelf import Shelf
from workers.streams.redis_source import RedisStreamSource
from workers.streams.scorer import StreamScorer
from workers.streams.source import Message

logger = logging.getLogger(__name__)

SYNC_SECONDS = 1.0
IDLE_WAIT_SECONDS = 0.02  # no binding had a message: look again this soon
_outage = OutageLog("stream bindings go on with the last good list", "stream bindings are read from it again")


@dataclass
class Running:
    """A binding being scored: its row as it was read, its source and scorer, and the counters
    already published."""

    binding: StreamBinding
    source: RedisStreamSource
    scorer: StreamScorer
    published: dict[str, int]


class StreamRunner:
    """Scores this worker's share of every active stream binding (steps 1-3 above)."""

    def __init__(self, consumer: str) -> None:
        self.consumer = consumer
        self.shelf = Shelf(size=4)
        self.routes: dict[int, ModelRoute] = {}
        self.running: dict[int, Running] = {}
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.status = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2)
        self.stats = LiveStats()
        self.next_sync = 0.0
        self.next_publish = 0.0

    def start(self) -> None:
        """Run in a daemon thread of its own."""
        self.thread = threading.Thread(target=self.run, name="paddock-streams", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Finish the round under way (its predictions written and acknowledged), then stop."""
        self.stopping.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=settings.PADDOCK_WORKER_DRAIN_SECONDS)
        for running in list(self.running.values()):
            self._close(running)
        self.running.clear()

    def run(self) -> None:
        """Rounds until stopped; an error in one round is logged and the next goes on."""
        while not self.stopping.is_set():
            try:
                handled = self.round()
            except Exception:  # noqa: BLE001 - a broken binding or Redis away must not end the thread
                logger.exception("stream scoring round failed")
                handled = 0
                self.stopping.wait(1.0)
            if not handled:
                self.stopping.wait(IDLE_WAIT_SECONDS)

    def round(self) -> int:
        """One step per binding; sync and publish when due. Messages handled."""
        now = time.monotonic()
        if now >= self.next_sync:
            self.next_sync = now + SYNC_SECONDS
            self.sync()
        handled = 0
        for running in list(self.running.values()):
            try:
                handled += running.scorer.step(0)
            except redis.RedisError as exc:
                logger.warning("stream binding %s: %s", running.binding.name, exc)
        if now >= self.next_publish:
            self.next_publish = now + 1.0
            self.publish()
        return handled

    # -- 1. bindings and routes ---------------------------------------------------------------

    def sync(self) -> None:
        """Start, restart and stop scorers to match the active bindings."""
        close_old_connections()
        try:
            bindings = {b.pk: b for b in StreamBinding.objects.select_related("model").filter(
                state=BindingState.ACTIVE)}
            self.routes = load_routes({b.model_id for b in bindings.values()})
        except DATABASE_DOWN as error:
            _outage.failed(error)
            return
        _outage.succeeded()
        for binding_id in [i for i in self.running if i not in bindings]:
            self._close(self.running.pop(binding_id))
        for binding_id, binding in bindings.items():
            current = self.running.get(binding_id)
            if current is not None and current.binding.updated_at == binding.updated_at:
                continue
            if current is not None:
                self._close(self.running.pop(binding_id))
            try:
                self.running[binding_id] = self._open(binding)
            except (redis.RedisError, ValueError) as exc:
                logger.warning("stream binding %s/%s cannot start: %s", binding.model.name, binding.name, exc)

    def _open(self, binding: StreamBinding) -> Running:
        client = redis.Redis.from_url(binding.redis_url or settings.REDIS_URL, socket_timeout=10,
                                      socket_connect_timeout=2, health_check_interval=10)
        source = RedisStreamSource(client, stream=binding.source, group=binding.group, consumer=self.consumer,
                                   sink=binding.sink, dead_letter=binding.dead_letter, start=binding.start)
        model_id, name = binding.model_id, binding.model.name
        scorer = StreamScorer(
            source, model=name, batch_size=binding.batch_size, output_format=binding.output_format,
            choose=lambda message: self.choose(model_id, message),
            signature_of=lambda number: self.signature_of(model_id, number),
            run=lambda number, inputs: self.predict(model_id, number, inputs),
            shadow=lambda number, inputs, outputs: self.shadow(model_id, number, inputs, outputs),
            observe=lambda number, queued, rows, compute_ms: self.observe(model_id, number, queued, rows, compute_ms),
            claim_idle_ms=settings.PADDOCK_STREAM_CLAIM_IDLE_MS)
        logger.info("scoring stream %s for %s (binding %s)", binding.source, name, binding.name)
        return Running(binding, source, scorer, {})

    def _close(self, running: Running) -> None:
        try:
            running.source.close()
        except redis.RedisError:
            pass

    # -- 2. the deployment, as REST follows it ------------------------------------------------

    def _route(self, model_id: int) -> ModelRoute:
        route = self.routes.get(model_id)
        if route is None:
            raise ModelNotReady("the model's route is not loaded yet")
        return route

    def choose(self, model_id: int, message: Message) -> int:
        """The version answering this message: the deployment's split, sticky by the A/B key's
        field in the message when the deployment has one."""
        route = self._route(model_id)
        sticky = None
        if route.sticky is not None:
            raw = message.fields.get(route.sticky[1].encode())
            sticky = raw.decode(errors="replace") if raw is not None else None
        number = traffic.choose(route, sticky)
        if number is None:
            raise ModelNotReady(f"model '{route.name}' has no version ready to serve")
        return number

    def signature_of(self, model_id: int, number: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The inputs and outputs of a version of the model."""
        version = self._route(model_id).versions.get(number)
        if version is None or not version.is_servable():
            raise ModelNotReady(f"version {number} is not ready to serve")
        return version.inputs, version.outputs

    def predict(self, model_id: int, number: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One run of a batch on the version's runtime (the batcher's session when it holds it)."""
        version = self._route(model_id).versions[number]
        return self.shelf.runtime(version.version_id, version.sha256).run(inputs)

    def shadow(self, model_id: int, number: int, inputs: dict[str, np.ndarray],
               outputs: dict[str, np.ndarray]) -> None:
        """The deployment's shadow share of batches also runs on the shadow version; its answers
        are compared with the live ones and counted in its live figures as REST's mirrored
        requests are (they are not written; failures never reach the stream)."""
        route = self._route(model_id)
        if route.shadow is None or route.shadow[0] == number or not traffic.mirrored(route):
            return
        shadow = route.versions[route.shadow[0]]
        started = time.perf_counter()
        try:
            mirrored = self.predict(model_id, shadow.number, inputs)
        except Exception:
            self.stats.shadow(shadow.version_id, ok=False, total_ms=(time.perf_counter() - started) * 1000,
                              comparison=None)
            raise
        self.stats.shadow(shadow.version_id, ok=True, total_ms=(time.perf_counter() - started) * 1000,
                          comparison=traffic.compare(outputs, mirrored))

    def observe(self, model_id: int, number: int, queued: list[float], rows: int, compute_ms: float) -> None:
        """Each answered message in the version's live figures, as a web process counts a request
        (so the console's charts, the rollups and the rollout gates see stream traffic too)."""
        version_id = self._route(model_id).versions[number].version_id
        for queue_ms in queued:
            self.stats.request(version_id, 200, queue_ms + compute_ms, queue_ms, compute_ms, rows)

    # -- 3. figures ---------------------------------------------------------------------------

    def publish(self) -> None:
        """The live figures counted since the last call; each binding's lag and the scorer's
        counters since the last publication."""
        try:
            self.stats.flush_now(self.status)
        except (redis.RedisError, OSError) as exc:
            logger.warning("live figures of stream predictions not written (Redis: %s); will retry", exc)
        for binding_id, running in list(self.running.items()):
            try:
                lag = running.source.lag()
                stats = running.scorer.stats
                now = {"read": stats.read, "predicted": stats.predicted, "dead": stats.dead, "rows": stats.rows}
                added = {name: value - running.published.get(name, 0) for name, value in now.items()}
                status.publish(self.status, binding_id, pending=lag.pending, undelivered=lag.undelivered,
                               exact=lag.exact, added=added, model=running.binding.model.name,
                               name=running.binding.name)
                running.published = now
            except redis.RedisError as exc:
                logger.warning("stream binding %s: figures not published: %s", running.binding.name, exc)
