"""Domain errors, each carrying its HTTP status; mapped to responses in one place
(`console.api.exception_handler` for the API, the console views for pages)."""


class PaddockError(Exception):
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(PaddockError):
    """HTTP 404: unknown, or not visible to the caller (names must not leak)."""

    http_status = 404


class Conflict(PaddockError):
    """HTTP 409: the name or state conflicts with what exists."""

    http_status = 409


class Forbidden(PaddockError):
    """HTTP 403: visible, but the caller's role or scope does not allow it."""

    http_status = 403


class PayloadTooLarge(PaddockError):
    """HTTP 413."""

    http_status = 413


class InvalidInput(PaddockError):
    """HTTP 400."""

    http_status = 400


class ServiceUnavailable(PaddockError):
    """HTTP 503: a backing service (Redis) cannot be reached."""

    http_status = 503
