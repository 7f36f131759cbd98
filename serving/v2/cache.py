"""A per-process cache for the hot path: a value is fresh for `ttl`; for another `stale` seconds
(default: `ttl` again) it is still served while one background task reloads it; older than that,
callers wait for the reload (so nothing served is older than ttl + stale). Concurrent misses share
one load. Without this, every request that arrives in the instant a route or token expires would
query the database (measured: 64 concurrent clients turned one load per second into 64, 14% of
the web process's time).

When a load fails with one of `unreachable` (the database is down: serving/v2/outage.py), the
last good value is served on, retried in the background every `ttl`, for at most `grace`
seconds after it was loaded; beyond that, or with no value at all, callers get
ServiceUnavailable saying why. Callers never wait on a database that is down while a value
within the grace is held.

Bounded as an LRU: past `max_entries` the least recently used key is dropped, one at a time, so a
flood of unknown keys (bearer strings, model names) costs the oldest entries, never every entry:
the keys in use keep being served from memory."""

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from console.errors import ServiceUnavailable
from serving.v2.outage import OutageLog, not_cached, too_old

K = TypeVar("K")
V = TypeVar("V")


class RefreshingCache(Generic[K, V]):
    """Values loaded once per key however many callers wait, served stale while a refresh runs."""

    def __init__(self, load: Callable[[K], Awaitable[V]], ttl: float, max_entries: int = 10_000,
                 stale: float | None = None, *, unreachable: tuple[type[Exception], ...] = (),
                 grace: float = 0.0, what: str = "values") -> None:
        self.load = load
        self.ttl = ttl
        self.stale = ttl if stale is None else stale
        self.max_entries = max_entries
        self.unreachable = unreachable
        self.grace = grace
        self.what = what  # plural, for messages: "routes", "tokens"
        self.outage = OutageLog(f"serving the last good {what} for up to {grace:g} s",
                                f"{what} are loaded from it again")
        # key → (value, fresh until, when it was last loaded, whether the last load failed as unreachable)
        self.entries: OrderedDict[K, tuple[V, float, float, bool]] = OrderedDict()
        self.loading: dict[K, asyncio.Task[V]] = {}

    async def get(self, key: K) -> V:
        """The value for `key`: fresh from memory, stale while reloading, or loaded now."""
        entry = self.entries.get(key)
        if entry is not None:
            value, expires, loaded, failing = entry
            now = time.monotonic()
            if failing and now - loaded > self.grace:
                if now < expires:  # tried less than `ttl` ago: not again yet
                    raise ServiceUnavailable(too_old(self.what, self.grace))
            elif now < expires + self.stale:
                self.entries.move_to_end(key)  # most recently used: the last to be evicted
                if now >= expires and key not in self.loading:
                    self._start(key)
                return value
        task = self.loading.get(key) or self._start(key)
        return await asyncio.shield(task)

    def peek(self, key: K) -> V | None:
        """The value for `key` if memory holds one that may still be served; never loads."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        value, expires, loaded, failing = entry
        now = time.monotonic()
        if now >= expires + self.stale or (failing and now - loaded > self.grace):
            return None
        return value

    def _start(self, key: K) -> "asyncio.Task[V]":
        task = asyncio.get_running_loop().create_task(self._refresh(key))
        self.loading[key] = task
        return task

    async def _refresh(self, key: K) -> V:
        try:
            try:
                value = await self.load(key)
            except self.unreachable as error:
                return self._last_good(key, error)
            self.outage.succeeded()
            now = time.monotonic()
            self.entries[key] = (value, now + self.ttl, now, False)
            self.entries.move_to_end(key)
            while len(self.entries) > self.max_entries:
                self.entries.popitem(last=False)  # the least recently used
            return value
        finally:
            self.loading.pop(key, None)

    def _last_good(self, key: K, error: Exception) -> V:
        """The value loaded before the database went away, kept another `ttl` (then tried again),
        or ServiceUnavailable when there is none or it is older than the grace."""
        self.outage.failed(error)
        entry = self.entries.get(key)
        if entry is None:
            raise ServiceUnavailable(not_cached(self.what)) from None
        value, _, loaded, _ = entry
        now = time.monotonic()
        self.entries[key] = (value, now + self.ttl, loaded, True)
        if now - loaded > self.grace:
            raise ServiceUnavailable(too_old(self.what, self.grace)) from None
        return value
