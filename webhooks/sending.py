"""One HTTP POST of a delivery, to an address checked beforehand (webhooks/targets.py).

The connection is made to that address, while the Host header and the TLS certificate check use
the URL's host name: the name is never resolved again, so the address checked is the address
reached. Redirects are not followed (http.client never does): a 3xx is a failed attempt, since a
redirect could point anywhere, a private address included. The whole attempt (connect, TLS, send,
answer) is cut off at the timeout, however slowly a receiver trickles its answer."""

import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from webhooks.targets import Target

MAX_ANSWER_BYTES = 1024  # of a receiver's answer, read for the log's error line; the rest is dropped
MAX_ERROR = 300


@dataclass(frozen=True)
class Answer:
    """How an attempt went: the status code (None when no answer came), what went wrong ('' for a
    2xx), and how long it took."""

    status: int | None
    error: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to `host` made to `address`, one of the host's checked addresses."""

    def __init__(self, target: Target, address: str, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.address, self.tls = address, target.tls
        self.default_port = 443 if target.tls else 80  # the Host header names a port only when it is not this
        self.raw: socket.socket | None = None
        self.was_cut = False  # set by `cut` before it shuts the socket: what the attempt's thread then sees

    def connect(self) -> None:
        """Connect to the checked address; for https, check the certificate against the host name."""
        self.raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = ssl.create_default_context().wrap_socket(self.raw, server_hostname=self.host) if self.tls \
            else self.raw

    def cut(self) -> None:
        """End the attempt from another thread: its blocked read or write returns at once."""
        self.was_cut = True
        if self.raw is not None:
            try:
                self.raw.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _snippet(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace").strip()
    return " ".join(text.split())[:200]


def _failure(exc: Exception, target: Target, address: str, timeout: float, cut: bool) -> str:
    if cut or isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, ssl.SSLError):
        return f"TLS with {target.host} failed: {exc.reason or exc}"
    where = target.host if target.host == address else f"{target.host} ({address})"
    if isinstance(exc, ConnectionRefusedError):
        return f"{where} refused the connection on port {target.port}"
    if isinstance(exc, OSError):
        return f"could not reach {where}: {exc.strerror or exc}"
    return f"{target.host} answered something that is not HTTP: {type(exc).__name__}"


def post(target: Target, body: bytes, headers: dict[str, str], *, timeout: float) -> Answer:
    """POST the body to the target's first address that takes the connection; an Answer, never
    an exception, for whatever the network or the receiver does."""
    started = time.monotonic()
    error = ""
    for address in target.addresses:
        left = timeout - (time.monotonic() - started)
        if left <= 0:
            break
        connection = PinnedConnection(target, address, left)
        timer = threading.Timer(left, connection.cut)
        timer.daemon = True
        timer.start()
        try:
            connection.request("POST", target.path, body=body, headers=headers)
            response = connection.getresponse()
            status, head = response.status, response.read(MAX_ANSWER_BYTES)
        except (OSError, http.client.HTTPException) as exc:
            # The attempt ran out of time: the timer cut it (its flag, set before the socket is shut:
            # the thread may still be inside `cut` as the read returns), or the socket's own timeout.
            cut = connection.was_cut
            error = _failure(exc, target, address, timeout, cut)
            if connection.raw is None and not cut:
                continue  # this address took no connection (nothing was sent): the next one
            return Answer(None, error[:MAX_ERROR], _ms_since(started))
        finally:
            timer.cancel()
            connection.close()
        if 200 <= status < 300:
            return Answer(status, "", _ms_since(started))
        if 300 <= status < 400:
            where = response.getheader("Location", "")[:200]
            return Answer(status, f"HTTP {status}: redirects are not followed (Location: {where})", _ms_since(started))
        said = _snippet(head)
        return Answer(status, (f"HTTP {status}: {said}" if said else f"HTTP {status}")[:MAX_ERROR], _ms_since(started))
    return Answer(None, error[:MAX_ERROR], _ms_since(started))


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
