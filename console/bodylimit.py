"""The ASGI guard in front of Django: who may send a body, and how big, decided before Django's
handler reads it (Django reads the whole body into a temporary file before any middleware,
view or size check runs, and that file moves to disk past 2.5 MB).

1. A write (any method but GET, HEAD, OPTIONS) without valid credentials is refused before a
   byte of its body is read: under /api/ without an `Authorization` header or a session cookie,
   401 as DRF words it; on a console page without a session cookie (the login and password
   reset forms aside), 403.
   A credential that is present is checked too, so a made-up one cannot have a body spooled: a
   bearer token through the data plane's token cache (the API's rules and messages, 401), a
   session cookie against the session store (it must name a signed-in user; else 401 or 403).
2. A declared Content-Length over the route's limit: 413 at once.
3. Otherwise the body is counted as Django reads it, chunked or not: past the limit, 413 goes
   out, Django is told the client left (it stops reading and answers nothing), and the
   connection closes, so the rest of the body is never read.
4. A credential that cannot be checked because the database is unreachable (a session, or a token
   the data plane's cache does not hold): 503 with the reason. A full disk while Django spools the
   body to its temporary file: 507 (console/errors.py `disk_full`), instead of a 500.

Limits: the upload API and the console's upload page take PADDOCK_MAX_UPLOAD_BYTES plus
MULTIPART_OVERHEAD_BYTES, a batch job's input PADDOCK_MAX_JOB_INPUT_BYTES plus the same; every
other route PADDOCK_MAX_REQUEST_BYTES. Refusals under /api/ are DRF's `{"detail": message}`; on
pages, the message as plain text (htmx swaps it like any 4xx fragment). The data plane (/v2,
/metrics) is dispatched before this guard and counts its own bodies (serving/v2/http.py
`read_body`)."""

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http.cookie import parse_cookie
from django.urls import Resolver404, resolve, reverse

from console.errors import ServiceUnavailable, disk_full
from serving.v2.http import header  # the data plane's: one way to read a header from an ASGI scope
from serving.v2.outage import DATABASE_DOWN, UNAVAILABLE, closing_on_outage

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Multipart framing and the form's other fields (format, signature, description) on top of the files.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
UPLOAD_ROUTES = (re.compile(r"^/api/v1/models/[^/]+/versions/$"), re.compile(r"^/models/[^/]+/upload/$"))
# Batch-job input files (API and console): PADDOCK_MAX_JOB_INPUT_BYTES plus the same framing.
JOB_ROUTES = (re.compile(r"^/api/v1/models/[^/]+/jobs/$"), re.compile(r"^/models/[^/]+/jobs/$"))
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
API_PREFIX = "/api/"
NO_CREDENTIALS = "authentication required: send 'Authorization: Bearer <token>'"  # DRF's words (HasScope)
NO_SESSION = "sign in first: this page takes posts from a signed-in session only"


@dataclass(frozen=True)
class Refusal:
    """An answer sent instead of Django's: status, message, and extra headers."""

    status: int
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()

    async def send(self, scope: Scope, send: Send) -> None:
        """Send it in the route's style, and close the connection: what is left of the body is never read."""
        if scope["path"].startswith(API_PREFIX):
            body, content_type = json.dumps({"detail": self.message}).encode(), b"application/json"
        else:
            body, content_type = self.message.encode() + b"\n", b"text/plain; charset=utf-8"
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close"), *self.headers]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class Limit:
    """A route's body limit and how its refusals are worded."""

    bytes: int
    shown: int  # the limit named in messages: an upload's own limit, without the multipart overhead
    noun: str

    def declared_over(self, length: int) -> Refusal:
        """413 for a Content-Length over the limit, naming it (the upload API's words for uploads)."""
        return Refusal(413, f"{self.noun} is {length} bytes; the limit is {self.shown} bytes")

    def streamed_over(self) -> Refusal:
        """413 for a body that streamed past the limit (chunked, or longer than it declared)."""
        return Refusal(413, f"{self.noun} is over the limit of {self.shown} bytes")


def limit_for(scope: Scope) -> Limit:
    """The upload limit (plus multipart framing) for an upload or a job's input, the small default for the rest."""
    if scope["method"] == "POST" and any(route.match(scope["path"]) for route in UPLOAD_ROUTES):
        upload = settings.PADDOCK_MAX_UPLOAD_BYTES
        return Limit(upload + MULTIPART_OVERHEAD_BYTES, upload, "upload")
    if scope["method"] == "POST" and any(route.match(scope["path"]) for route in JOB_ROUTES):
        job_input = settings.PADDOCK_MAX_JOB_INPUT_BYTES
        return Limit(job_input + MULTIPART_OVERHEAD_BYTES, job_input, "input file")
    default = settings.PADDOCK_MAX_REQUEST_BYTES
    return Limit(default, default, "request body")


def has_session_cookie(scope: Scope) -> bool:
    """Whether the request carries a session cookie at all (whether it is valid is Django's to say)."""
    raw = header(scope, b"cookie")
    return raw is not None and bool(parse_cookie(raw).get(settings.SESSION_COOKIE_NAME))  # parsed as Django does


def sign_in_paths() -> frozenset[str]:
    """The forms that are posted before there is a session: the console's and the admin's login,
    and the request for a password reset link."""
    return frozenset({reverse("login"), reverse("admin:login"), reverse("password_reset")})


def before_sign_in(path: str) -> bool:
    """Whether `path` is a form posted before anyone is signed in: a sign-in path, or a password
    reset link's form for the new password (posted from the anonymous session its link opened)."""
    if path in sign_in_paths():
        return True
    try:
        return resolve(path).url_name == "password_reset_confirm"
    except Resolver404:
        return False


def without_credentials(scope: Scope) -> Refusal | None:
    """401 for an API write with neither a token nor a session; 403 for a console write without a
    session (not a redirect to the login page: a redirect would make the browser send the form
    again as a GET, and Django itself answers a cookieless POST with 403, CSRF's)."""
    if scope["method"] in SAFE_METHODS or has_session_cookie(scope):
        return None
    if scope["path"].startswith(API_PREFIX):
        if header(scope, b"authorization") is not None:
            return None  # DRF checks it and words any refusal (invalid, expired, malformed)
        return Refusal(401, NO_CREDENTIALS, ((b"www-authenticate", b'Bearer realm="paddock"'),))
    if before_sign_in(scope["path"]):
        return None
    return Refusal(403, NO_SESSION)


async def invalid_credentials(scope: Scope) -> Refusal | None:
    """The refusal for a write whose token or session cookie is present but not valid (None when valid)."""
    if scope["method"] in SAFE_METHODS or before_sign_in(scope["path"]):
        return None
    authorization = header(scope, b"authorization")
    if scope["path"].startswith(API_PREFIX) and authorization is not None:
        from console.errors import PaddockError
        from serving.v2.auth import client_of
        from serving.v2.http import tokens

        try:
            await tokens.authenticate(authorization, client_of(scope))
        except ServiceUnavailable:  # the database is down and the token is not cached: the API's words
            return database_down()
        except PaddockError as error:
            return Refusal(error.http_status, error.message, tuple(error.row.headers()))
        return None
    key = parse_cookie(header(scope, b"cookie") or "").get(settings.SESSION_COOKIE_NAME)
    try:
        session_valid = not key or await sync_to_async(_signed_in, thread_sensitive=True)(key)
    except DATABASE_DOWN:
        return database_down()
    if not session_valid:
        if scope["path"].startswith(API_PREFIX):
            return Refusal(401, NO_CREDENTIALS, ((b"www-authenticate", b'Bearer realm="paddock"'),))
        return Refusal(403, NO_SESSION)
    return None


def database_down() -> Refusal:
    """503 while the database is unreachable: a credential that needs it cannot be checked."""
    error = ServiceUnavailable(UNAVAILABLE)
    return Refusal(error.http_status, error.message, tuple(error.row.headers()))


@closing_on_outage
def _signed_in(session_key: str) -> bool:
    """Whether the session store holds this key, unexpired, for a signed-in user."""
    from importlib import import_module

    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return "_auth_user_id" in store.load()


def declared_length(scope: Scope) -> int | None:
    """The Content-Length header as a number; None when absent (chunked) or not a number."""
    raw = header(scope, b"content-length")
    return int(raw) if raw is not None and raw.strip().isdigit() else None


class BodyLimit:
    """Wraps an ASGI application (Django's) with the checks above; other scopes pass through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = without_credentials(scope) or await invalid_credentials(scope)
        limit = limit_for(scope)
        length = declared_length(scope)
        if refusal is None and length is not None and length > limit.bytes:
            refusal = limit.declared_over(length)
        if refusal is not None:
            return await refusal.send(scope, send)  # not one body byte read
        counted = _Counted(scope, receive, send, limit)
        try:
            await self.app(scope, *counted.channels())
        except OSError as exc:  # Django spools the body to a temporary file before any middleware runs
            error = disk_full(exc)
            if error is None or counted.started:
                raise
            counted.answered = True
            await Refusal(error.http_status, error.message).send(scope, send)


class _Counted:
    """The receive and send one request's application gets: receive counts the body and, past
    the limit, sends 413 and reports the client gone; send then drops whatever the application
    still answers."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, limit: Limit) -> None:
        self.scope, self._receive, self._send, self.limit = scope, receive, send, limit
        self.received = 0
        self.refused = False  # past the limit: every later receive reports the client gone
        self.answered = False  # the 413 went out: the application's own answer is dropped
        self.started = False

    def channels(self) -> tuple[Receive, Send]:
        """The (receive, send) pair to hand the application."""
        return self.receive, self.send

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit.bytes:
                self.refused = True
                if not self.started:  # Django never has: it reads the whole body before answering
                    self.answered = True
                    await self.limit.streamed_over().send(self.scope, self._send)
                # Django's read_body stops at a disconnect (RequestAborted) and answers nothing.
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Mapping[str, Any]) -> None:
        if self.answered:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)
