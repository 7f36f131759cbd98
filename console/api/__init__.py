"""The management API (DRF): its one exception handler and its pagination."""

from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_datetime
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from console.errors import InvalidInput, PaddockError
from console.middleware import discard_uploads, service_error


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus Paddock's domain errors: `{"detail": message}` with their status; the
    database unreachable is 503 and a full disk 507 (console.middleware.service_error), not a 500."""
    error = exc if isinstance(exc, PaddockError) else service_error(exc)
    if error is not None:
        if error.kind == "insufficient_storage" and context.get("request") is not None:
            discard_uploads(context["request"])  # a full disk while DRF parsed the upload
        headers = {name.decode(): value.decode() for name, value in error.row.headers()}
        return Response({"detail": error.message}, status=error.http_status, headers=headers)
    return drf_exception_handler(exc, context)


def text_param(request: Request, name: str) -> str:
    """A query parameter's text ('' when absent); InvalidInput for a NUL character, which no
    PostgreSQL text holds (a filter on one was a 500)."""
    value = request.query_params.get(name, "")
    if "\x00" in value:
        raise InvalidInput(f"'{name}' must not contain NUL characters")
    return value


class Pagination(LimitOffsetPagination):
    """DRF's `?limit=&offset=` pages with a ceiling on `limit`: a larger one reads as 1000. DRF
    passed any run of digits on to PostgreSQL, whose LIMIT is 64-bit (a 20-digit limit was a 500).
    (An offset past the count is answered without a query.)"""

    max_limit = 1000


def parse_instant(raw: str | None) -> datetime | None:
    """An ISO 8601 date-time query parameter as an aware UTC datetime (a naive one is taken as
    UTC); None when absent; ValueError when it names no time. In UTC because PostgreSQL refuses an
    offset over 15:59 and a time past 9999 (each was a 500); 2026-02-30 or a 25-hour offset is
    well formed but no time at all."""
    if not raw:
        return None
    try:
        parsed = parse_datetime(raw)
    except (ValueError, OverflowError):
        parsed = None
    if parsed is None:
        raise ValueError(raw)
    try:
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(raw) from None
