"""The database going away, as the data plane sees it (docs/reliability.md). Routes and tokens are
served from the last good copy in memory while PostgreSQL is unreachable, for at most
PADDOCK_DB_OUTAGE_GRACE_SECONDS; after that, and for anything never loaded, 503 with the reason.

Here: which errors mean "unreachable" (not a bad query), a read that closes its thread's broken
connection so the next attempt connects afresh, the messages callers see, and one log line when
an outage starts and one when it ends (not one per request)."""

import contextlib
import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError, connection

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger(__name__)

# Connection refused or lost, the server shutting down: worth serving the last good copy for.
# Anything else (a bad query) is a bug and stays one.
DATABASE_DOWN: tuple[type[Exception], ...] = (OperationalError, InterfaceError)
# What the console and the management API answer while it lasts (503, console/errors.py).
UNAVAILABLE = ("the database is unavailable: retry once it is back (inference goes on serving the models "
               "and tokens it already holds)")


def too_old(what: str, grace: float) -> str:
    """The data plane's refusal once the last good copy is older than the grace."""
    return f"the database is unreachable and the cached {what} are older than {grace:g} s; retry once it is back"


def not_cached(what: str) -> str:
    """The data plane's refusal for something it never loaded before the outage."""
    return f"the database is unreachable and this process holds no cached {what} for it; retry once it is back"


def first_line(error: BaseException) -> str:
    """An error's first line, for the log (psycopg adds hints on further lines)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def closing_on_outage(read: Callable[P, R]) -> Callable[P, R]:
    """Wrap a read that runs in a worker thread: when the database is unreachable, close that
    thread's connection before re-raising, so the next attempt connects again instead of
    failing on the dead one (nothing else closes it: the data plane has no request cycle)."""

    @functools.wraps(read)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return read(*args, **kwargs)
        except DATABASE_DOWN:
            with contextlib.suppress(DatabaseError):
                connection.close()
            raise

    return wrapper


class OutageLog:
    """Logs the start of an outage once (with the error) and its end once, for one reader."""

    def __init__(self, while_down: str, once_back: str) -> None:
        self.while_down = while_down  # what this reader does meanwhile
        self.once_back = once_back
        self.down = False

    def failed(self, error: BaseException) -> None:
        """A read or write of the database failed as unreachable."""
        if not self.down:
            self.down = True
            logger.warning("the database is unreachable (%s): %s", first_line(error), self.while_down)

    def succeeded(self) -> None:
        """A read or write of the database worked."""
        if self.down:
            self.down = False
            logger.warning("the database is reachable again: %s", self.once_back)
