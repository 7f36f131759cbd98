"""Request middleware: a request id on every request, for the logs and the audit log; and a
database outage or a full disk answered as what it is (503, 507 with the reason), not as a 500."""

import contextlib
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

from console.errors import PaddockError, ServiceUnavailable, disk_full
from console.htmx import htmx_partial
from serving.v2.outage import DATABASE_DOWN, UNAVAILABLE, first_line

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
API_PREFIX = "/api/"
logger = logging.getLogger(__name__)


class RequestIdMiddleware:
    """Gives every request an id (the caller's X-Request-ID when it is sane) and echoes it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request.request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex  # type: ignore[attr-defined]
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
        return response


def service_error(error: BaseException) -> PaddockError | None:
    """The refusal a failure of what Paddock stands on is answered with: the database unreachable
    (503) or the disk full (507); None for anything else (a bug stays a 500)."""
    if isinstance(error, DATABASE_DOWN):
        return ServiceUnavailable(UNAVAILABLE)
    return disk_full(error)


def error_response(request: HttpRequest, error: PaddockError) -> HttpResponse:
    """The refusal in the route's style: DRF's `{"detail": message}` under /api/, else the console's
    fragment (htmx) or page. Rendered without the request: its context processors would read the
    session and the user, from the database that may be the thing that is down."""
    headers = {name.decode(): value.decode() for name, value in error.row.headers()}
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": error.message}, status=error.http_status, headers=headers)
    template = "console/partials/_service_error.html" if htmx_partial(request) else "console/service_error.html"
    context: dict[str, Any] = {"message": error.message, "status": error.http_status}
    return HttpResponse(render_to_string(template, context), status=error.http_status, headers=headers)


def discard_uploads(request: Any) -> None:
    """Close, and so delete, the temporary files of an upload that failed midway (Django's or
    DRF's request): what fit of it must not hold a full disk until the garbage collector runs."""
    for handler in request.upload_handlers:
        upload = getattr(handler, "file", None)
        if upload is not None:
            with contextlib.suppress(OSError):  # its last buffered write fails again: it is closed all the same
                upload.close()


class ServiceErrorMiddleware:
    """Answers a view's database outage or full disk with 503 or 507 and the reason. Place it
    before CsrfViewMiddleware: its process_view reads a multipart body first (CSRF's check would
    read it, and a full disk there would be a 500)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view: Any, args: Any, kwargs: Any) -> HttpResponse | None:
        """Receive a multipart upload here, where a full disk can still be answered with 507."""
        if (request.method != "POST" or not (request.content_type or "").startswith("multipart/")
                or request.path.startswith(API_PREFIX)):  # DRF reads it in the view, after its permission checks
            return None
        try:
            request.POST  # noqa: B018 - parsing it spools the files to FILE_UPLOAD_TEMP_DIR
        except OSError as exc:
            error = disk_full(exc)
            if error is None:  # a client gone midway (UnreadablePostError): CSRF's check answers it, as before
                return None
            discard_uploads(request)
            logger.warning("an upload to %s could not be received: %s", request.path, first_line(exc))
            return error_response(request, error)
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """503 or 507 for what `service_error` recognises; anything else goes on to Django's 500."""
        error = service_error(exception)
        if error is None:
            return None
        if error.kind == "insufficient_storage":
            discard_uploads(request)
        logger.warning("%s %s answered %d: %s", request.method, request.path, error.http_status, first_line(exception))
        return error_response(request, error)
