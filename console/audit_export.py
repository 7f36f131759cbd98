"""The audit log's exports: the events of a filtered view (console.audit_filters) as CSV or JSON,
streamed a few hundred events at a time, never held whole in memory.

- Oldest first (chain order), with every column the chain's hash covers plus `id`, `prev_hash`,
  `hash` and `key_id`, so that an unfiltered export can be checked link by link by someone who
  holds the audit key.
- JSON is one array (`[{...},\n{...}]`): a document any JSON tool reads, written as it streams.
  Values are as stored: `before` and `after` are objects.
- CSV has one header row; `before` and `after` are JSON text. A text cell that a spreadsheet
  would run as a formula (it starts with =, +, -, @, a tab or a carriage return: a username typed
  at a failed sign-in, a model's name) is prefixed with a single quote (OWASP's advice), so the
  CSV is for reading; the JSON is the verbatim copy.
- Under ASGI (uvicorn) the rows are read by an async iterator, each batch in the request's
  thread: Django would read a plain iterator whole before sending its first byte.
- Each export is audited (`audit.exported`, with its format and filters) before it is read."""

import csv
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone
from django.utils.http import content_disposition_header

from console.audit import Actor, record_event
from console.audit_filters import AuditFilters
from console.models import AuditEvent

COLUMNS = ["id", "created_at", "actor_username", "actor_user_id", "actor_token_id", "actor_token_name", "action",
           "object_type", "object_id", "object_repr", "before", "after", "client_address", "request_id",
           "prev_hash", "hash", "key_id"]
BATCH = 500  # events per chunk sent (and per server-side cursor fetch)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


def event_record(event: AuditEvent) -> dict[str, Any]:
    """One event as exported: its columns, the time in UTC with microseconds (as hashed)."""
    record = {column: getattr(event, column) for column in COLUMNS}
    record["created_at"] = event.created_at.astimezone(UTC).isoformat(timespec="microseconds")
    return record


def _batches(events: QuerySet[AuditEvent]) -> Iterator[list[AuditEvent]]:
    batch: list[AuditEvent] = []
    for event in events.order_by("id").iterator(chunk_size=BATCH):
        batch.append(event)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


class _Line:
    """A file for csv.writer that hands back what it was given."""

    def write(self, text: str) -> str:
        return text


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_chunks(events: QuerySet[AuditEvent]) -> Iterator[str]:
    """The header, then the events a batch at a time."""
    writer = csv.writer(_Line())
    yield writer.writerow(COLUMNS)
    for batch in _batches(events):
        yield "".join(writer.writerow([_cell(value) for value in event_record(event).values()]) for event in batch)


def json_chunks(events: QuerySet[AuditEvent]) -> Iterator[str]:
    """`[`, the events a batch at a time separated by commas, `]`: one JSON array."""
    yield "["
    separator = "\n"
    for batch in _batches(events):
        yield separator + ",\n".join(json.dumps(event_record(event), ensure_ascii=False, sort_keys=True)
                                      for event in batch)
        separator = ",\n"
    yield "\n]\n"


async def _pulled(chunks: Iterator[str]) -> AsyncIterator[str]:
    # thread_sensitive: every batch runs in the request's thread, on its database connection
    # (the server-side cursor lives there).
    pull = sync_to_async(_next, thread_sensitive=True)
    while (chunk := await pull(chunks)) is not None:
        yield chunk


def _next(chunks: Iterator[str]) -> str | None:
    return next(chunks, None)


def record_export(*, actor: Actor, fmt: str, filters: AuditFilters) -> None:
    """Audit the export itself (`audit.exported`, its format and filters) before a row is read:
    a copy of the log leaving Paddock is worth knowing about."""
    with transaction.atomic():
        record_event(actor=actor, action="audit.exported", object_type="console.auditevent",
                     after={"format": fmt, "filters": {name: value for name, value in vars(filters).items() if value}})


def export_response(request: HttpRequest, events: QuerySet[AuditEvent], fmt: str) -> StreamingHttpResponse:
    """The events as a streamed attachment, `paddock-audit-<UTC time>.<fmt>`."""
    chunks = csv_chunks(events) if fmt == "csv" else json_chunks(events)
    content = _pulled(chunks) if isinstance(request, ASGIRequest) else chunks
    response = StreamingHttpResponse(content, content_type=CONTENT_TYPES[fmt])
    filename = f"paddock-audit-{timezone.now():%Y%m%dT%H%M%SZ}.{fmt}"
    response["Content-Disposition"] = content_disposition_header(True, filename) or "attachment"
    response["Cache-Control"] = "no-store"  # who did what, from where: not for shared caches
    return response
