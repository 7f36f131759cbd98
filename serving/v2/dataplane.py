"""The web side of inference: route a decoded request to a version, enqueue it on the
version's Redis stream, and await the worker's reply. Transport-free (REST and websockets
share it); one instance per web process.

1. Routes (model → versions, active version, settings) are cached (serving.v2.cache: never older
   than 2 × ROUTE_TTL), so a deployment change reaches every web process within a second,
   without a restart. While the database is unreachable the last good routes serve, for at most
   PADDOCK_DB_OUTAGE_GRACE_SECONDS (serving.v2.outage).
2. Enqueue: a Lua script checks the depth limit and XADDs, on a write-only connection
   (serving.v2.resp); the requests that arrive in one event-loop tick leave in one write. A
   refusal (queue full) comes back as a reply.
3. Each process subscribes to its own reply channel; workers publish one message per batch
   and process, and the subscribed connection resolves the waiting requests as it reads them:
   no connection per request, no polling, no command re-issued per reply.
4. A request ends in its reply, or 504 at its deadline, or 503 when no worker holds the version
   (cold start: the first request asks the workers to load it and waits within its deadline),
   or 503 when Redis is unreachable. Never silence.
5. Live figures per version (serving.livestats) are counted in memory and added to Redis once a
   second; a shadow request is enqueued only after its caller has been answered, and its
   comparison with the live answer is counted there, never returned. Shadows waiting or running
   are held to MAX_SHADOW_BACKLOG requests and PADDOCK_SHADOW_BACKLOG_BYTES; beyond, skipped.
6. The transports charge each request's bytes to `budget` (serving.v2.budget) while it is in
   flight: per token and per process."""

import asyncio
import functools
import itertools
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from console.errors import (
    DeadlineExceeded,
    ModelNotReady,
    NotFound,
    QueueFull,
    ServiceUnavailable,
    error_of,
)
from registry.choices import VersionStatus
from serving import metrics
from serving.livestats import LiveStats
from serving.v2 import resp, traffic, wire
from serving.v2.budget import InFlightBytes, export_gauges
from serving.v2.cache import RefreshingCache
from serving.v2.outage import DATABASE_DOWN
from serving.v2.protocol import InferRequest
from serving.v2.routes import ModelRoute, VersionRoute, load_model_route
from serving.v2.wire import (
    fresh_heartbeats,
    holders_by_stream,
    lua,
    now_ms,
    pack_request,
    pack_tensor,
    reply_key,
    unpack_replies,
    unpack_tensor,
    wanted_key,
    workers_key,
)

logger = logging.getLogger(__name__)

# XADD the request (ARGV[1]) unless the stream already holds `limit` (ARGV[2]) entries, queued
# or running. Sent on a write-only connection: a refusal, or Redis' own error, is published to
# the caller's reply channel (ARGV[4]) as a reply to its request id (ARGV[3]), like a worker's,
# with an error kind of console/errors.py's table. Key names come from serving/v2/wire.py.
ENQUEUE = lua("""
local ok, result = pcall(function()
  local depth = redis.call('XLEN', KEYS[1])
  if depth >= tonumber(ARGV[2]) then return depth end
  redis.call('XADD', KEYS[1], '*', '${ENTRY_FIELD}', ARGV[1])
  return false
end)
local reply
if not ok then
  local message = type(result) == 'table' and result.err or tostring(result)
  message = 'the request queue is unavailable (Redis: ' .. message .. '); retry later'
  reply = {['${RID}'] = tonumber(ARGV[3]), ['${KIND}'] = '${UNAVAILABLE}', ['${ERROR}'] = message}
elseif result then
  reply = {['${RID}'] = tonumber(ARGV[3]), ['${KIND}'] = '${QUEUE_FULL}', ['${DEPTH}'] = result}
else
  return 1
end
redis.call('PUBLISH', ARGV[4], cmsgpack.pack({reply}))
return 0
""", UNAVAILABLE=ServiceUnavailable.kind, QUEUE_FULL=QueueFull.kind)

ROUTE_TTL = 0.5
# Mirrored requests are held this long and sent together; beyond the backlog (this many requests,
# or PADDOCK_SHADOW_BACKLOG_BYTES) they are skipped.
SHADOW_DELAY_SECONDS = 0.05
MAX_SHADOW_BACKLOG = 4096
HOLDERS_TTL = 1.0
# The web process waits a little past the deadline for the worker's own timeout reply.
DEADLINE_GRACE_SECONDS = 0.25


@dataclass(slots=True)
class Answer:
    """A worker's answer to one request: its outputs and the figures of the batch it ran in."""

    outputs: dict[str, np.ndarray]
    queue_ms: float
    compute_ms: float
    batch: int


class DataPlane:
    """The web process's side of inference: routes, the Redis connections, the waiting requests."""

    def __init__(self, redis_url: str) -> None:
        self.instance = uuid.uuid4().hex[:12]
        self.reply_to = reply_key(self.instance)
        self.redis_url = redis_url
        # Control calls (holders, cold start, figures, health) use redis-py; the two hot
        # operations, enqueue and replies, have lean connections of their own (serving.v2.resp).
        self.redis = aioredis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
        self.commands: resp.RespProtocol | None = None
        self.subscriber: resp.RespProtocol | None = None
        self.connecting = asyncio.Lock()
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.rids = itertools.count(1)
        self.routes: RefreshingCache[str, ModelRoute | None] = RefreshingCache(
            sync_to_async(load_model_route, thread_sensitive=True), ROUTE_TTL, unreachable=DATABASE_DOWN,
            grace=settings.PADDOCK_DB_OUTAGE_GRACE_SECONDS, what="routes")
        self.holders: dict[str, int] = {}  # version's stream → live workers holding it
        self.holders_expire = 0.0
        self.stats = LiveStats()
        self.budget = InFlightBytes(settings.PADDOCK_WEB_INFLIGHT_BYTES, settings.PADDOCK_TOKEN_INFLIGHT_BYTES)
        self.shadows: set[asyncio.Task[None]] = set()
        self.shadow_outbox: list[tuple[ModelRoute, VersionRoute, InferRequest, int, Answer, int]] = []
        self.shadow_bytes = 0  # of the mirrored requests in the outbox or running (each with its live answer)
        self.shadow_budget = settings.PADDOCK_SHADOW_BACKLOG_BYTES

    # -- routing -------------------------------------------------------------------------------

    async def route(self, name: str) -> ModelRoute | None:
        """The model's route (cached), or None for an unknown model."""
        return await self.routes.get(name)

    def choose_version(self, route: ModelRoute, number: int | None, request: InferRequest,
                       headers: list[tuple[bytes, bytes]]) -> VersionRoute:
        """The version named in the path, else the deployment's split (by A/B key or weight)."""
        if number is None:
            number = traffic.choose(route, traffic.sticky_value(route, headers, request.parameters))
        return self.pick_version(route, number)

    @staticmethod
    def pick_version(route: ModelRoute, number: int | None) -> VersionRoute:
        """The version `number` (else the active one), refused unless it is ready to serve."""
        if number is None:
            if route.active is None:
                raise ModelNotReady(f"model '{route.name}' has no ready version to serve")
            number = route.active
        version = route.versions.get(number)
        if version is None:
            raise NotFound(f"model '{route.name}' has no version {number}")
        if version.status == VersionStatus.FAILED:
            raise NotFound(f"model '{route.name}' version {number} failed validation and cannot serve")
        if not version.is_servable():
            raise ModelNotReady(f"model '{route.name}' version {number} is not ready ({version.status})")
        return version

    async def holder_count(self, version: VersionRoute) -> int:
        """How many live workers hold the version, from their heartbeats (read at most every HOLDERS_TTL)."""
        now = time.monotonic()
        if now >= self.holders_expire:
            self.holders_expire = now + HOLDERS_TTL
            beats = fresh_heartbeats(await self.redis.hgetall(workers_key()))
            self.holders = {stream: len(workers) for stream, workers in holders_by_stream(beats).items()}
        return self.holders.get(version.stream, 0)

    # -- inference -----------------------------------------------------------------------------

    async def infer(self, route: ModelRoute, version: VersionRoute, request: InferRequest, rows: int) -> Answer:
        """Enqueue one checked request on the version's stream and await its reply or a clear error."""
        timeout_ms = request.timeout_us // 1000 if request.timeout_us else route.settings["default_timeout_ms"]
        deadline_ms = now_ms() + max(1, timeout_ms)
        tensors = [pack_tensor(t.name, t.datatype, t.array) for t in request.inputs]
        rid = next(self.rids)
        payload = pack_request(rid=rid, reply_to=self.reply_to, deadline_ms=deadline_ms,
                               priority=request.priority, rows=rows, tensors=tensors)
        stream = version.stream
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[rid] = future
        self.stats.in_flight[version.version_id] += 1
        try:
            limit = route.settings["max_queue_depth"]
            try:
                if self.subscriber is None or self.commands is None:
                    await self._connect()
                if not await self.holder_count(version):
                    # Cold start: ask the workers to load this version.
                    await self.redis.zadd(wanted_key(), {str(version.version_id): time.time()})
                if self.commands is None:  # lost while the holders were read
                    raise RedisConnectionError("lost the connection to Redis")
                self.commands.send("EVAL", ENQUEUE, 1, stream, payload, limit, rid, self.reply_to)
            except RedisError as exc:
                raise ServiceUnavailable(f"the request queue is unavailable (Redis: {exc}); retry later") from None
            # hiredis copied them into the outgoing buffer: while it waits, the request holds only
            # what the transports charge it (budget.request_bytes), not two more copies of its inputs.
            del tensors, payload
            wait = (deadline_ms - now_ms()) / 1000 + DEADLINE_GRACE_SECONDS
            timer = asyncio.get_running_loop().call_later(max(0.001, wait), _expire, future)
            try:
                reply = await future
            except TimeoutError:
                if not await self.holder_count(version):
                    raise ModelNotReady(
                        f"model '{route.name}' version {version.number} is not loaded by any worker yet "
                        f"(waited {timeout_ms} ms); retry later"
                    ) from None
                raise DeadlineExceeded(
                    f"model '{route.name}' version {version.number} did not answer within {timeout_ms} ms"
                ) from None
            finally:
                timer.cancel()
            if reply[wire.KIND] == QueueFull.kind:
                raise QueueFull(
                    f"model '{route.name}' version {version.number} has {reply[wire.DEPTH]} requests queued, "
                    f"its limit is {limit}; retry later"
                )
        finally:
            self.pending.pop(rid, None)
            self.stats.in_flight[version.version_id] -= 1
        return self._answer(route, version, reply)

    # -- shadow ----------------------------------------------------------------------------------

    def mirror(self, route: ModelRoute, request: InferRequest, rows: int, live: Answer, size: int) -> None:
        """Call after the caller has its answer: run the same request on the shadow version and
        count how its output compares. Nothing of it reaches the caller. `size`: the request's
        bytes (budget.request_bytes); its live answer's are added.

        Mirrored requests wait in this process up to SHADOW_DELAY_SECONDS and leave together, so
        the worker runs them as one batch instead of interleaving one shadow run with each live
        request (at one client that doubled the live path's round trips: p50 1.45 → 2.18 ms)."""
        if not traffic.mirrored(route):
            return
        version = route.versions.get(route.shadow[0]) if route.shadow else None
        if version is None or not version.is_servable():
            return
        size += sum(array.nbytes for array in live.outputs.values())  # kept to compare with the shadow's
        if (len(self.shadow_outbox) + len(self.shadows) >= MAX_SHADOW_BACKLOG
                or self.shadow_bytes + size > self.shadow_budget):
            metrics.shadow(route.name, str(version.number), "skipped", None)  # the shadow can't keep up
            return
        self.shadow_bytes += size
        self.shadow_outbox.append((route, version, request, rows, live, size))
        if len(self.shadow_outbox) == 1:
            asyncio.get_running_loop().call_later(SHADOW_DELAY_SECONDS, self._release_shadows)

    def _release_shadows(self) -> None:
        batch, self.shadow_outbox = self.shadow_outbox, []
        loop = asyncio.get_running_loop()
        for route, version, request, rows, live, size in batch:
            task = loop.create_task(self._shadow(route, version, request, rows, live))
            self.shadows.add(task)
            # A done callback, not a `finally`: it runs even for a task cancelled before it started.
            task.add_done_callback(functools.partial(self._shadow_done, size))

    def _shadow_done(self, size: int, task: "asyncio.Task[None]") -> None:
        self.shadows.discard(task)
        self.shadow_bytes -= size

    async def _shadow(self, route: ModelRoute, version: VersionRoute, request: InferRequest, rows: int,
                      live: Answer) -> None:
        started = time.perf_counter()
        comparison, ok = None, False
        try:
            answer = await self.infer(route, version, request, rows)
            comparison, ok = traffic.compare(live.outputs, answer.outputs), True
        except Exception as exc:  # noqa: BLE001 - a shadow failure is a figure, not the caller's error
            logger.debug("shadow request to %s v%s failed: %s", route.name, version.number, exc)
        total_ms = (time.perf_counter() - started) * 1000
        self.stats.shadow(version.version_id, ok=ok, total_ms=total_ms, comparison=comparison)
        metrics.shadow(route.name, str(version.number), "ok" if ok else "error", comparison)

    def _answer(self, route: ModelRoute, version: VersionRoute, reply: dict[str, Any]) -> Answer:
        if reply[wire.KIND]:
            raise error_of(reply[wire.KIND], reply[wire.ERROR])
        outputs = dict(unpack_tensor(packed) for packed in reply[wire.OUTPUTS])
        return Answer(outputs, reply[wire.QUEUE_MS], reply[wire.COMPUTE_MS], reply[wire.BATCH])

    # -- replies -------------------------------------------------------------------------------

    async def _connect(self) -> None:
        """Subscribe to this process's reply channel before the first request is enqueued (a
        reply published to nobody is gone), and open the command connection."""
        async with self.connecting:
            if self.subscriber is None:
                subscriber = await resp.connect(self.redis_url, on_message=self._on_replies,
                                                on_lost=self._on_subscriber_lost)
                await subscriber.command("SUBSCRIBE", self.reply_to)
                self.subscriber = subscriber
            if self.commands is None:
                # Write-only: enqueueing needs no answer (refusals come as replies), so nothing
                # wakes this process between sending a request and its reply.
                commands = await resp.connect(self.redis_url, on_lost=self._on_commands_lost)
                commands.send("CLIENT", "REPLY", "OFF")
                self.commands = commands
            self.stats.ensure_flusher(self.redis)

    def _on_replies(self, message: bytes) -> None:
        """A worker's replies to this process, resolved as soon as they are read."""
        for reply in unpack_replies(message):
            future = self.pending.get(reply[wire.RID])
            if future is not None and not future.done():
                future.set_result(reply)

    def _on_subscriber_lost(self, error: Exception) -> None:
        # Redis restarted or is unreachable: replies published meanwhile are gone. Say so to
        # every waiting request now, rather than at its deadline; the next request resubscribes.
        self.subscriber = None
        self._fail_pending(ServiceUnavailable(f"lost the connection to Redis while waiting ({error})"))

    def _on_commands_lost(self, error: Exception) -> None:
        # What was written just before may not have reached Redis.
        self.commands = None
        self._fail_pending(ServiceUnavailable(f"lost the connection to Redis while sending ({error})"))

    def _fail_pending(self, error: Exception) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(error)

    async def redis_ready(self) -> bool:
        """Whether Redis answers (the readiness probe)."""
        try:
            return bool(await self.redis.ping())
        except RedisError:
            return False


def _expire(future: "asyncio.Future[Any]") -> None:
    if not future.done():
        future.set_exception(TimeoutError())


_dataplane: DataPlane | None = None


def get_dataplane() -> DataPlane:
    """This process's one DataPlane, made on first use."""
    global _dataplane
    if _dataplane is None:
        dataplane = _dataplane = DataPlane(settings.REDIS_URL)
        export_gauges(dataplane.budget, lambda: dataplane.shadow_bytes)
    return _dataplane

