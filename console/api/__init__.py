"""The management API (DRF) and its one exception handler."""

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from console.errors import PaddockError


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus Paddock's domain errors: `{"detail": message}` with their status."""
    if isinstance(exc, PaddockError):
        return Response({"detail": exc.message}, status=exc.http_status)
    return drf_exception_handler(exc, context)
