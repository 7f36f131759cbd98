"""Paddock's one error hierarchy and its one table.

Code raises a `PaddockError` subclass; each class names its *kind*, and `KINDS` maps a kind to
everything a caller sees of it, in one place:

    kind          class               REST  Retry-After  websocket close  console
    invalid       InvalidInput        400   -            4400             the message, status 400
    unauthorized  Unauthenticated     401   -            4401             (API and data plane only)
    forbidden     Forbidden           403   -            4403             the message, status 403
    not_found     NotFound            404   -            4404             the message, status 404
    not_allowed   MethodNotAllowed    405   -            4405             (data plane only)
    conflict      Conflict            409   -            4409             the message, status 409
    too_large     PayloadTooLarge     413   -            4413             the message, status 413
    queue_full    QueueFull           429   1            4429             (data plane only)
    too_many_requests TooManyRequests 429 10         4429             (data plane, sign-in)
    inference     InferenceError      500   -            4500             (data plane only)
    internal      InternalError       500   -            4500             (data plane only)
    not_ready     ModelNotReady       503   1            4503             (data plane only)
    unavailable   ServiceUnavailable  503   1            4503             the message, status 503
    deadline      DeadlineExceeded    504   -            4504             (data plane only)
    insufficient_storage InsufficientStorage 507 -       4507             the message, status 507

The REST body is the transport's own: v2's `{"error": message}` on the data plane, DRF's
`{"detail": message}` on the management API. A websocket error reply is
`{"error": message, "status": REST status}`, and a refusal at connect closes with the code above.
Workers and the enqueue script send the kind over Redis, never a status (serving/v2/wire.py);
the web side turns it back into its class with `error_of(kind, message)`."""

import errno
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

WEBSOCKET_CLOSE_OFFSET = 4000  # private close codes: 4000 + the status the same refusal gets over REST


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """One row of the table: what a caller sees of an error of this kind."""

    status: int
    retry_after: str | None = None

    @property
    def websocket_close(self) -> int:
        return WEBSOCKET_CLOSE_OFFSET + self.status

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The HTTP headers a response for this kind carries besides its body."""
        return [(b"retry-after", self.retry_after.encode())] if self.retry_after else []


KINDS: dict[str, ErrorKind] = {
    "invalid": ErrorKind(400),
    "unauthorized": ErrorKind(401),
    "forbidden": ErrorKind(403),
    "not_found": ErrorKind(404),
    "not_allowed": ErrorKind(405),
    "conflict": ErrorKind(409),
    "too_large": ErrorKind(413),
    "queue_full": ErrorKind(429, retry_after="1"),
    # An address past its failed authentications (serving.v2.auth: counted per 10 s window, so
    # the wait is at most the window).
    "too_many_requests": ErrorKind(429, retry_after="10"),
    "inference": ErrorKind(500),
    "internal": ErrorKind(500),
    "not_ready": ErrorKind(503, retry_after="1"),
    "unavailable": ErrorKind(503, retry_after="1"),
    "deadline": ErrorKind(504),
    # The artifact store (or the folder uploads are received in) is full: no version was stored.
    "insufficient_storage": ErrorKind(507),
}


class PaddockError(Exception):
    """A refusal or failure to report to the caller; `kind` picks its row of `KINDS`."""

    kind: ClassVar[str] = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def http_status(self) -> int:
        return KINDS[self.kind].status

    @property
    def row(self) -> ErrorKind:
        return KINDS[self.kind]


class InvalidInput(PaddockError):
    """The request is malformed or does not fit: names the input, what was expected and received."""

    kind = "invalid"


class Unauthenticated(PaddockError):
    """No token, or one that is invalid, expired or revoked."""

    kind = "unauthorized"


class Forbidden(PaddockError):
    """Visible, but the caller's role or scope does not allow it."""

    kind = "forbidden"


class NotFound(PaddockError):
    """Unknown, or not visible to the caller (names must not leak)."""

    kind = "not_found"


class MethodNotAllowed(PaddockError):
    kind = "not_allowed"


class Conflict(PaddockError):
    """The name or state conflicts with what exists."""

    kind = "conflict"


class PayloadTooLarge(PaddockError):
    kind = "too_large"


class QueueFull(PaddockError):
    """The version's queue is at its depth limit, a socket has too many requests in flight, or a
    token or the web process is past its budget of bytes in flight (serving/v2/budget.py)."""

    kind = "queue_full"


class TooManyRequests(PaddockError):
    """Too many failed authentications from one address: wait, then try again."""

    kind = "too_many_requests"


class InferenceError(PaddockError):
    """The runtime failed on a request that passed validation."""

    kind = "inference"


class InternalError(PaddockError):
    """An unexpected failure of Paddock's own code: the caller gets a reference to the log, never
    the exception's text."""

    kind = "internal"


class ModelNotReady(PaddockError):
    """No worker holds the version (and none loaded it within the deadline), or it is not validated yet."""

    kind = "not_ready"


class ServiceUnavailable(PaddockError):
    """A backing service (Redis, PostgreSQL) cannot be reached."""

    kind = "unavailable"


class DeadlineExceeded(PaddockError):
    """The request's deadline passed before it was answered."""

    kind = "deadline"


class InsufficientStorage(PaddockError):
    """The disk an upload is received in or stored on is full (ENOSPC); nothing of it is kept."""

    kind = "insufficient_storage"


_CLASS_OF: dict[str, type[PaddockError]] = {cls.kind: cls for cls in PaddockError.__subclasses__()}


def error_of(kind: str, message: str) -> PaddockError:
    """The error a kind sent over the wire stands for (an unknown kind is an inference failure)."""
    return _CLASS_OF.get(kind, InferenceError)(message)


STORE_FULL = ("the artifact store is full: no space is left for this upload, and nothing of it was kept; "
              "free some space (or upload a smaller file), then try again")


def disk_full(error: BaseException) -> InsufficientStorage | None:
    """A full disk or quota (ENOSPC, EDQUOT) while an upload is received or stored, as the 507 its
    caller gets (the message names no path); None for any other error."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage(STORE_FULL)
    return None


def full_disk_is_507(function: Callable[P, R]) -> Callable[P, R]:
    """Wrap a function that stores an upload: a full disk inside it raises InsufficientStorage."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except OSError as exc:
            error = disk_full(exc)
            if error is None:
                raise
            raise error from exc

    return wrapper
