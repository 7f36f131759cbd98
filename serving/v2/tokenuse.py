"""Token `last_used_at`, written off the hot path. A request notes its token's use in memory (a
dict assignment); a background task of the web process writes every token's latest use in one
UPDATE every PADDOCK_TOKEN_USE_FLUSH_SECONDS. While the database is unreachable the uses stay in
memory (the latest per token) and are written once it is back; at shutdown what is pending is
written, so uses are lost only by a process that dies, or stops while the database is still down.
A use never moves `last_used_at` back (the API writes it too)."""

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

from asgiref.sync import sync_to_async
from django.db.models import Case, DateTimeField, Q, Value, When

from console.models import ApiToken
from serving.v2.outage import DATABASE_DOWN, OutageLog, closing_on_outage

logger = logging.getLogger(__name__)

BATCH = 500  # tokens per UPDATE: the CASE grows with each


@closing_on_outage
def write_last_used(uses: dict[int, float]) -> int:
    """Move each token's `last_used_at` forward to its use (a Unix time); returns the rows changed.
    One UPDATE per BATCH tokens."""
    changed = 0
    items = sorted(uses.items())
    for start in range(0, len(items), BATCH):
        batch = items[start:start + BATCH]
        at = Case(*[When(pk=pk, then=Value(datetime.fromtimestamp(used, UTC))) for pk, used in batch],
                  output_field=DateTimeField())
        changed += ApiToken.objects.filter(pk__in=[pk for pk, _ in batch]).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=at)).update(last_used_at=at)
    return changed


class TokenUses:
    """This process's token uses not yet written, and the task that writes them."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.pending: dict[int, float] = {}  # token id → its latest use (Unix time) not yet written
        self.task: asyncio.Task[None] | None = None
        self.outage = OutageLog("token uses are kept in memory until it is back",
                                "the token uses kept meanwhile are written")

    def note(self, token_id: int) -> None:
        """A request used this token (hot path: no database). Starts the writer on first use."""
        self.pending[token_id] = time.time()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._write_every_interval())

    async def _write_every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()

    async def flush(self) -> int:
        """Write what is pending now; on failure keep it (the latest use per token) for next time."""
        batch, self.pending = self.pending, {}
        if not batch:
            return 0
        try:
            changed = await sync_to_async(write_last_used, thread_sensitive=True)(batch)
        except Exception as error:  # noqa: BLE001 - a failed write must not end the writer
            for token_id, used in batch.items():
                self.pending[token_id] = max(used, self.pending.get(token_id, used))
            if isinstance(error, DATABASE_DOWN):
                self.outage.failed(error)
            else:
                logger.exception("writing token uses failed; kept for the next try")
            return 0
        self.outage.succeeded()
        return changed

    async def close(self, timeout: float = 5.0) -> None:
        """Stop the writer and write what is pending (at shutdown), waiting at most `timeout`."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout)
