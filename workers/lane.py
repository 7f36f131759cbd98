"""A batcher lane's connection to Redis: its own lean socket, the replies and acknowledgements it
has not sent yet (they leave with its next read, in one write), and the partial batches it holds
for versions that wait for fuller ones (max_queue_delay_ms). See workers/batcher.py."""

import math
import threading
import time
from typing import Any

from serving.v2.resp import BlockingResp
from serving.v2.wire import GROUP, pack_replies


class Lane:
    """A loop that takes and runs batches, with its own Redis connection: the round trip per
    batch (replies out, next requests in) skips redis-py's layers, which at one client cost more
    CPU than the model (serving.v2.resp)."""

    def __init__(self, index: int, redis_url: str) -> None:
        self.index = index
        self.hot = BlockingResp(redis_url)
        # Replies and acknowledgements not sent yet: they leave with the next read, in one write.
        self.unsent: list[tuple[Any, ...]] = []
        self.thread: threading.Thread | None = None
        # stream → entries read for a batch that waits to fill, and when it runs anyway (monotonic).
        # A waiting batch never blocks the lane: it goes on reading and serving other versions.
        self.waiting: dict[str, list[Any]] = {}
        self.until: dict[str, float] = {}

    def respond(self, stream: str, replies: list[tuple[str, dict[str, Any]]], done: list[Any]) -> None:
        """Queue the replies (one message per web process) and the entries' XACK and XDEL."""
        for target in {to for to, _ in replies}:
            self.unsent.append(("PUBLISH", target, pack_replies([answer for to, answer in replies if to == target])))
        self.unsent.append(("XACK", stream, GROUP, *done))
        self.unsent.append(("XDEL", stream, *done))

    def flush(self) -> None:
        """Send what is queued in one write."""
        if self.unsent:
            commands, self.unsent = self.unsent, []
            self.hot.execute(commands)

    def hold(self, stream: str, entries: list[Any], delay_s: float) -> None:
        """Keep a partial batch until it fills or `delay_s` after its first entry was read."""
        self.waiting[stream] = entries
        self.until.setdefault(stream, time.monotonic() + delay_s)

    def release(self, stream: str) -> list[Any]:
        """The entries held for the stream (none if none), no longer held."""
        self.until.pop(stream, None)
        return self.waiting.pop(stream, [])

    def due(self, everything: bool = False) -> list[tuple[str, list[Any]]]:
        """The held batches whose delay has ended (all of them with `everything`), released."""
        now = time.monotonic()
        return [(stream, self.release(stream)) for stream, until in list(self.until.items())
                if everything or until <= now]

    def block_ms(self, idle_ms: int) -> int | None:
        """How long the next read may block: `idle_ms`, or less when a held batch is due sooner
        (None: not at all; Redis reads BLOCK 0 as forever)."""
        if not self.until:
            return idle_ms
        remaining = math.ceil((min(self.until.values()) - time.monotonic()) * 1000)
        return None if remaining <= 0 else min(idle_ms, remaining)
