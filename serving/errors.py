"""The data plane's errors: each carries its HTTP status; the v2 body is {"error": message}.
One table for REST and websockets (`status_of`)."""

from console.errors import PaddockError


class InferenceError(PaddockError):
    """HTTP 500: the runtime failed on a request that passed validation."""

    http_status = 500


class InvalidInput(PaddockError):
    """HTTP 400: names the input, what was expected and what was received."""

    http_status = 400


class ModelNotFound(PaddockError):
    """HTTP 404: unknown model or version, or one the token may not see."""

    http_status = 404


class Unauthenticated(PaddockError):
    """HTTP 401."""

    http_status = 401


class Forbidden(PaddockError):
    """HTTP 403."""

    http_status = 403


class PayloadTooLarge(PaddockError):
    """HTTP 413."""

    http_status = 413


class QueueFull(PaddockError):
    """HTTP 429 with Retry-After: the version's queue is at its depth limit."""

    http_status = 429


class ModelNotReady(PaddockError):
    """HTTP 503: no worker holds the version (and none loaded it within the deadline)."""

    http_status = 503


class BackendUnavailable(PaddockError):
    """HTTP 503 with Retry-After: Redis cannot be reached."""

    http_status = 503


class DeadlineExceeded(PaddockError):
    """HTTP 504: the request's deadline passed before it was answered."""

    http_status = 504


RETRY_AFTER = {QueueFull: "1", BackendUnavailable: "1", ModelNotReady: "1"}
