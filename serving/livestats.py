"""Live figures per model version, shared by every web process through Redis: what rollout
gates judge, what the console charts, what the rollups keep.

Each web process (and each worker's stream runner, for the messages it answers) counts in
memory (a few dict increments per request) and once a second adds its counts to one Redis hash
per version and second, `{prefix}:stats:{version_id}:{epoch second}` (HINCRBY, so processes
merge by addition; kept STATS_TTL_SECONDS). Fields:
  c{code}      requests answered with that HTTP status
  g{code} j{i} the same status and total latency, for the requests rollout gates judge only: those
               the deployment's split routed (not a version pinned in the path) and not refused by
               the caller's own shorter deadline (a predict token must not steer a rollout)
  t{i} q{i} k{i}  latency histograms (total, queue, compute) over LATENCY_EDGES_MS, bucket i
  r{i}         gated requests only: the compute time of the request's batch ÷ the batch's rows, over
               ROW_EDGES_MS (finer: a small model's row takes microseconds). The version's own
               cost, whatever waits in the queue: what rollout gates compare (serving.gates)
  b{rows}      requests by the number of rows in the batch they ran in
  sn se sr sa  shadow: mirrored requests, shadow failures, rows compared, rows whose argmax agreed
  sd           shadow: sum of each comparison's max absolute difference
  s{i}         shadow latency histogram (total)
  f            requests in flight (waiting for their reply) summed over the processes' samples"""

import asyncio
import bisect
import logging
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import redis
import redis.asyncio
from django.conf import settings
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

LATENCY_EDGES_MS = (0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000,
                    1500, 2000, 3000, 5000, 10_000, 30_000, 120_000)
# Compute per row: 1 µs to about a minute in steps of 2^(1/4) (19% apart).
ROW_EDGES_MS = tuple(round(0.001 * 2 ** (i / 4), 6) for i in range(104))
STATS_TTL_SECONDS = 2 * 3600
FLUSH_SECONDS = 1.0


def stats_key(version_id: int, second: int) -> str:
    """Key of the Redis hash of one version's counts in one epoch second; every web process adds to it."""
    return f"{settings.PADDOCK_REDIS_PREFIX}:stats:{version_id}:{second}"


def active_key() -> str:
    """Sorted set: version id → the last second it had figures (what the rollups visit)."""
    return f"{settings.PADDOCK_REDIS_PREFIX}:stats:active"


def bucket(ms: float, edges: tuple[float, ...] = LATENCY_EDGES_MS) -> int:
    """Index of the first edge at or above `ms` (len(edges) above them all)."""
    return bisect.bisect_left(edges, ms)


class LiveStats:
    """One web process's counts not yet added to Redis."""

    def __init__(self) -> None:
        self.pending: dict[tuple[int, int], Counter[str]] = {}
        self.flusher: asyncio.Task[None] | None = None
        self.in_flight: Counter[int] = Counter()  # version id → requests waiting for a reply now

    def _counts(self, version_id: int) -> Counter[str]:
        key = (version_id, int(time.time()))
        counts = self.pending.get(key)
        if counts is None:
            counts = self.pending[key] = Counter()
        return counts

    def request(self, version_id: int, code: int, total_ms: float, queue_ms: float | None = None,
                compute_ms: float | None = None, batch: int | None = None, *, gated: bool = True) -> None:
        """Count one answered request: its status and latency, and for one that reached a worker
        (`queue_ms` given) its queue and compute latency and its batch's rows; `gated`: also in
        the figures rollout gates judge (see the module's docstring)."""
        counts = self._counts(version_id)
        counts[f"c{code}"] += 1
        latency = bucket(total_ms)
        counts[f"t{latency}"] += 1
        if gated:
            counts[f"g{code}"] += 1
            counts[f"j{latency}"] += 1
        if queue_ms is not None:
            counts[f"q{bucket(queue_ms)}"] += 1
            counts[f"k{bucket(compute_ms or 0.0)}"] += 1
            counts[f"b{batch}"] += 1
            if gated and batch:
                counts[f"r{bucket((compute_ms or 0.0) / batch, ROW_EDGES_MS)}"] += 1

    def shadow(self, version_id: int, *, ok: bool, total_ms: float, comparison: dict[str, Any] | None) -> None:
        """Count one mirrored request: a failure, or how its outputs compared with the live answer."""
        counts = self._counts(version_id)
        counts["sn"] += 1
        counts[f"s{bucket(total_ms)}"] += 1
        if not ok or comparison is None:
            counts["se"] += 1
            return
        counts["sr"] += comparison["rows"]
        counts["sa"] += comparison["agree"]
        # Stored in micro-units so that HINCRBY (integers) can add it; inf (shapes differ) is capped.
        counts["sd"] += int(min(comparison["max_abs_diff"], 1e6) * 1e6)

    def ensure_flusher(self, client: redis.asyncio.Redis) -> None:
        """Start the once-a-second flush on the running loop, unless it is running already."""
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.get_running_loop().create_task(self._flush_forever(client))

    async def _flush_forever(self, client: redis.asyncio.Redis) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush(client)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                logger.warning("live stats not written (Redis: %s); will retry", exc)

    async def flush(self, client: redis.asyncio.Redis) -> None:
        """Add the pending counts, and a sample of the requests in flight, to Redis in one round
        trip; on failure they stay pending for the next flush."""
        batch = self._take()
        if not batch:
            return
        try:
            async with client.pipeline(transaction=False) as pipe:
                _queue(pipe, batch)
                await pipe.execute()
        except (RedisError, OSError):
            self._restore(batch)
            raise

    def flush_now(self, client: redis.Redis) -> None:
        """`flush` for a thread without an event loop (a worker's stream runner)."""
        batch = self._take()
        if not batch:
            return
        try:
            with client.pipeline(transaction=False) as pipe:
                _queue(pipe, batch)
                pipe.execute()
        except (RedisError, OSError):
            self._restore(batch)
            raise

    def _take(self) -> dict[tuple[int, int], Counter[str]]:
        second = int(time.time())
        for version_id, waiting in self.in_flight.items():
            if waiting > 0:  # a sample per process per second: summed over processes in Redis
                self.pending.setdefault((version_id, second), Counter())["f"] += waiting
        batch, self.pending = self.pending, {}
        return batch

    def _restore(self, batch: dict[tuple[int, int], Counter[str]]) -> None:
        """Keep the counts for the next flush rather than lose them."""
        for pending_key, counts in batch.items():
            self.pending.setdefault(pending_key, Counter()).update(counts)


def _queue(pipe: Any, batch: dict[tuple[int, int], Counter[str]]) -> None:
    """The commands adding `batch` to Redis, on a pipeline (asyncio's or not: queueing is the same)."""
    latest: dict[int, int] = {}
    for (version_id, second), counts in batch.items():
        key = stats_key(version_id, second)
        for field, value in counts.items():
            pipe.hincrby(key, field, value)
        pipe.expire(key, STATS_TTL_SECONDS)
        latest[version_id] = max(second, latest.get(version_id, 0))
    if latest:
        pipe.zadd(active_key(), {str(v): s for v, s in latest.items()})


# -- reading (beat tasks, API, console; synchronous) ------------------------------------------

def client() -> redis.Redis:
    """A synchronous client for the readers below (beat tasks, API, console)."""
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)


def read_seconds(conn: redis.Redis, version_id: int, seconds: Iterable[int]) -> dict[int, Counter[str]]:
    """Per second: the merged counts of every web process."""
    seconds = list(seconds)
    with conn.pipeline(transaction=False) as pipe:
        for second in seconds:
            pipe.hgetall(stats_key(version_id, second))
        raw = pipe.execute()
    return {second: Counter({k.decode(): int(v) for k, v in fields.items()})
            for second, fields in zip(seconds, raw, strict=True) if fields}


def read_window(conn: redis.Redis, version_id: int, start: int, end: int) -> Counter[str]:
    """Counts of one version over the whole seconds [start, end)."""
    total: Counter[str] = Counter()
    for counts in read_seconds(conn, version_id, range(start, end)).values():
        total.update(counts)
    return total


def gated(counts: Counter[str]) -> Counter[str]:
    """The counts as rollout gates see them: statuses and total latency of the gated requests only
    (the other fields as they are), for `summarize`."""
    view = Counter({field: n for field, n in counts.items() if field[0] not in "ctgj"})
    for field, n in counts.items():
        if field[0] == "g":
            view["c" + field[1:]] = n
        elif field[0] == "j":
            view["t" + field[1:]] = n
    return view


def percentile(counts: Counter[str], prefix: str, q: float) -> float | None:
    """The q-quantile (0–1) in ms of histogram `prefix`, interpolated within its bucket."""
    buckets = sorted((int(field[len(prefix):]), n) for field, n in counts.items()
                     if field.startswith(prefix) and field[len(prefix):].isdigit())
    total = sum(n for _, n in buckets)
    if not total:
        return None
    rank = q * total
    seen = 0
    for index, n in buckets:
        if seen + n >= rank:
            low = LATENCY_EDGES_MS[index - 1] if index > 0 else 0.0
            high = LATENCY_EDGES_MS[index] if index < len(LATENCY_EDGES_MS) else LATENCY_EDGES_MS[-1]
            return round(low + (high - low) * ((rank - seen) / n), 3)
        seen += n
    return LATENCY_EDGES_MS[-1]


def summarize(counts: Counter[str], seconds: float) -> dict[str, Any]:
    """What a person or a gate reads: rates, errors by code, latency percentiles by phase,
    batch sizes, shadow agreement."""
    codes = {field[1:]: n for field, n in counts.items() if field.startswith("c")}
    requests = sum(codes.values())
    errors = sum(n for code, n in codes.items() if code.startswith("5"))
    batch_rows = {field[1:]: n for field, n in counts.items() if field.startswith("b")}
    batched = sum(batch_rows.values())
    shadow_n, shadow_rows = counts.get("sn", 0), counts.get("sr", 0)
    compared = shadow_n - counts.get("se", 0)
    return {
        "requests": requests,
        "rps": round(requests / seconds, 3) if seconds else 0.0,
        "in_flight": round(counts.get("f", 0) / seconds, 2) if seconds else 0.0,
        "errors": errors,
        "error_rate": round(errors / requests, 5) if requests else 0.0,
        "codes": dict(sorted(codes.items())),
        "latency_ms": {phase: {f"p{int(q * 100)}": percentile(counts, prefix, q) for q in (0.5, 0.95, 0.99)}
                       for phase, prefix in (("total", "t"), ("queue", "q"), ("compute", "k"))},
        "batch_rows": dict(sorted(batch_rows.items(), key=lambda kv: int(kv[0]))),
        "mean_batch_rows": round(sum(int(r) * n for r, n in batch_rows.items()) / batched, 2) if batched else None,
        "shadow": {
            "requests": shadow_n,
            "errors": counts.get("se", 0),
            "agreement": round(counts.get("sa", 0) / shadow_rows, 5) if shadow_rows else None,
            "mean_max_abs_diff": round(counts.get("sd", 0) / 1e6 / compared, 6) if compared > 0 else None,
            "p99_ms": percentile(counts, "s", 0.99),
        },
    }
