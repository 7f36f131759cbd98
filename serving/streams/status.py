"""What the workers say of each stream binding, in Redis: the lag (pending + undelivered, group-
wide, refreshed by each worker reading the binding once a second) in one hash (field: the
binding's id), and counters summed over every worker (messages read, predictions written, dead
letters, rows) in a hash per binding. Readers: the API, the console, the dashboard and /metrics."""

import json
import time
from typing import Any

import redis
from django.conf import settings

FRESH_SECONDS = 10.0  # a lag older than this is not current (no worker reads the binding)
COUNTERS = ("read", "predicted", "dead", "rows")


def lag_key() -> str:
    """The hash of binding id → its latest lag (JSON)."""
    return f"{settings.PADDOCK_REDIS_PREFIX}:streams:lag"


def counts_key(binding_id: int) -> str:
    """The hash of one binding's counters."""
    return f"{settings.PADDOCK_REDIS_PREFIX}:streams:counts:{binding_id}"


def publish(conn: redis.Redis, binding_id: int, *, pending: int, undelivered: int, exact: bool = True,
            added: dict[str, int] | None = None, model: str = "", name: str = "") -> None:
    """A worker's latest view of a binding's lag, and what its scorer did since the last call
    (`model` and `name` label the binding on /metrics, which reads no database)."""
    pipe = conn.pipeline(transaction=False)
    pipe.hset(lag_key(), str(binding_id), json.dumps({"pending": pending, "undelivered": undelivered,
                                                      "exact": exact, "ts": time.time(),
                                                      "model": model, "name": name}))
    for name, value in (added or {}).items():
        if value:
            pipe.hincrby(counts_key(binding_id), name, value)
    pipe.execute()


def read_all(conn: redis.Redis, binding_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Each binding's figures: `lag` (None when no worker has said lately: `fresh` False),
    `pending`, `undelivered`, and the counters."""
    if not binding_ids:
        return {}
    pipe = conn.pipeline(transaction=False)
    pipe.hmget(lag_key(), [str(i) for i in binding_ids])
    for binding_id in binding_ids:
        pipe.hgetall(counts_key(binding_id))
    lags, *counters = pipe.execute()
    now = time.time()
    found = {}
    for binding_id, raw, counts in zip(binding_ids, lags, counters, strict=True):
        lag = json.loads(raw) if raw else {}
        fresh = bool(lag) and now - lag.get("ts", 0) <= FRESH_SECONDS
        found[binding_id] = {
            "lag": lag["pending"] + lag["undelivered"] if fresh else None,
            "pending": lag.get("pending") if fresh else None,
            "undelivered": lag.get("undelivered") if fresh else None, "fresh": fresh,
            **{name: int(counts.get(name.encode(), 0)) for name in COUNTERS}}
    return found


def forget(conn: redis.Redis, binding_id: int) -> None:
    """A deleted binding's figures."""
    pipe = conn.pipeline(transaction=False)
    pipe.hdel(lag_key(), str(binding_id))
    pipe.delete(counts_key(binding_id))
    pipe.execute()


def for_metrics(conn: redis.Redis) -> list[dict[str, Any]]:
    """Every binding a worker spoke of lately: model, name, lag, pending and the counters."""
    now = time.time()
    lags = [(int(raw_id), lag) for raw_id, lag in ((i, json.loads(raw)) for i, raw in conn.hgetall(lag_key()).items())
            if now - lag.get("ts", 0) <= FRESH_SECONDS and lag.get("model")]
    pipe = conn.pipeline(transaction=False)  # every binding's counters in one round trip
    for binding_id, _ in lags:
        pipe.hgetall(counts_key(binding_id))
    counted = pipe.execute() if lags else []
    return [{"model": lag["model"], "name": lag["name"], "lag": lag["pending"] + lag["undelivered"],
             "pending": lag["pending"], **{name: int(counts.get(name.encode(), 0)) for name in COUNTERS}}
            for (_, lag), counts in zip(lags, counted, strict=True)]
