"""A batcher lane's connection to Redis: its own lean socket, and the replies and acknowledgements
it has not sent yet (they leave with its next read, in one write). See workers/batcher.py."""

import threading
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
