"""A lean asyncio connection to Redis for the data plane's two hot operations: enqueueing a
request and receiving replies.

redis-py's asyncio client spent more of the infer path than the commands themselves: a pipeline
object, a connection pool, retries and Python command packing per round trip, and its reply
reader re-issued BLMPOP after every reply, a socket write between the worker's reply and the
HTTP response (py-spy at one client, docs/benchmarks.md). Here hiredis packs and parses, the
commands of one event-loop tick leave in one write, and a subscribed connection hands each
published message to a callback as soon as it is read, with nothing to re-issue. A connection
can also be write-only (CLIENT REPLY OFF): then nothing comes back to wake the process for.
Everything else keeps using redis-py."""

import asyncio
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

CONNECT_TIMEOUT = 2.0
# A command unanswered this long means Redis is stuck: the connection is dropped, and every
# command waiting on it fails (as redis-py's socket_timeout did).
COMMAND_TIMEOUT = 5.0


class RespProtocol(asyncio.Protocol):
    """Commands in, replies out in the same order; pushed pub/sub messages go to on_message."""

    def __init__(self, on_message: Callable[[bytes], None] | None = None,
                 on_lost: Callable[[Exception], None] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.waiters: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.outgoing: list[bytes] = []
        self.on_message = on_message
        self.on_lost = on_lost
        self.closed: Exception | None = None
        self.watchdog: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport; ask the kernel to notice a peer that vanished."""
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # A subscriber may be idle for long: let the kernel notice a peer that vanished.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def data_received(self, data: bytes) -> None:
        """Parse replies as they arrive: resolve waiting commands, or pass pushed messages on."""
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self.close(RedisConnectionError(f"Redis sent what is not RESP: {exc}"))
                return
            if reply is False:
                return
            if self.on_message is not None and type(reply) is list and reply and reply[0] == b"message":
                self.on_message(reply[2])
                continue
            if not self.waiters:
                continue  # a reply nobody waits for any more (its command's caller was cancelled)
            waiter, _ = self.waiters.popleft()
            if waiter.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                waiter.set_exception(ResponseError(str(reply)))
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail whatever waits, and tell the owner the connection is gone."""
        reason = f"lost the connection to Redis ({exc})" if exc else "Redis closed the connection"
        self._fail(self.closed or RedisConnectionError(reason))

    # -- commands ------------------------------------------------------------------------------

    def command(self, *args: Any) -> "asyncio.Future[Any]":
        """Send a command; the future gets its reply, or ResponseError / ConnectionError."""
        if self.closed is not None:
            raise self.closed
        future: asyncio.Future[Any] = self.loop.create_future()
        if not self.outgoing:
            self.loop.call_soon(self._write)  # after this tick's other commands are queued too
        self.outgoing.append(hiredis.pack_command(args))
        self.waiters.append((future, time.monotonic()))
        if self.watchdog is None:
            self.watchdog = self.loop.call_later(COMMAND_TIMEOUT, self._check_stuck)
        return future

    def send(self, *args: Any) -> None:
        """Send a command whose reply is not read: for a connection after CLIENT REPLY OFF."""
        if self.closed is not None:
            raise self.closed
        if not self.outgoing:
            self.loop.call_soon(self._write)
        self.outgoing.append(hiredis.pack_command(args))

    def _write(self) -> None:
        if self.outgoing and self.transport is not None and self.closed is None:
            data = self.outgoing[0] if len(self.outgoing) == 1 else b"".join(self.outgoing)
            self.transport.write(data)
        self.outgoing.clear()

    def _check_stuck(self) -> None:
        self.watchdog = None
        if not self.waiters or self.closed is not None:
            return
        waited = time.monotonic() - self.waiters[0][1]
        if waited >= COMMAND_TIMEOUT:
            self.close(RedisTimeoutError(f"Redis did not answer within {COMMAND_TIMEOUT:g} s"))
        else:
            self.watchdog = self.loop.call_later(COMMAND_TIMEOUT - waited, self._check_stuck)

    def close(self, error: Exception | None = None) -> None:
        """Fail what waits with `error` and drop the connection."""
        self._fail(error or RedisConnectionError("the connection to Redis was closed"))
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, error: Exception) -> None:
        first = self.closed is None
        self.closed = self.closed or error
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        while self.waiters:
            waiter, _ = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(self.closed)
        if first and self.on_lost is not None:
            self.on_lost(self.closed)


def setup_commands(options: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What a new connection sends first for the URL's options (redis.connection.parse_url):
    AUTH with its user and password, SELECT of its db."""
    commands: list[tuple[Any, ...]] = []
    if options.get("password"):
        commands.append(("AUTH", *([options["username"]] if options.get("username") else []), options["password"]))
    if options.get("db"):
        commands.append(("SELECT", options["db"]))
    return commands


async def connect(url: str, *, on_message: Callable[[bytes], None] | None = None,
                  on_lost: Callable[[Exception], None] | None = None) -> RespProtocol:
    """Open a connection as redis-py would for the same URL (redis://, rediss://, unix://; user,
    password and db), or raise redis' ConnectionError."""
    options = parse_url(url)
    loop = asyncio.get_running_loop()

    def factory() -> RespProtocol:
        return RespProtocol(on_message, on_lost)

    protocol: RespProtocol | None = None
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            if options.get("connection_class") is UnixDomainSocketConnection:
                _, protocol = await loop.create_unix_connection(factory, options["path"])
            else:
                tls = ssl.create_default_context() if options.get("connection_class") is SSLConnection else None
                _, protocol = await loop.create_connection(
                    factory, options.get("host", "localhost"), options.get("port", 6379), ssl=tls)
            for command in setup_commands(options):
                await protocol.command(*command)
    except (OSError, TimeoutError, ResponseError) as exc:
        if protocol is not None:
            protocol.close()
        if isinstance(exc, ResponseError):
            raise
        raise RedisConnectionError(f"cannot connect to Redis: {exc or 'timed out'}") from None
    return protocol


class BlockingResp:
    """The blocking counterpart, for a worker's batcher thread: the commands given together
    leave in one sendall and their replies are read in order. A Redis error reply raises
    ResponseError (after every reply is read); a lost or stuck connection raises redis'
    ConnectionError and is reopened on the next call."""

    def __init__(self, url: str, *, timeout: float = COMMAND_TIMEOUT) -> None:
        self.options = parse_url(url)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.reader = hiredis.Reader()

    def execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send the commands in one write and return their replies in order."""
        if self.sock is None:
            self._connect()
        try:
            replies = self._round_trip(commands)
        except (OSError, hiredis.ProtocolError) as exc:
            self.close()
            raise RedisConnectionError(f"lost the connection to Redis ({exc})") from None
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise ResponseError(str(reply))
        return replies

    def _round_trip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        assert self.sock is not None
        self.sock.sendall(b"".join([hiredis.pack_command(command) for command in commands]))
        replies: list[Any] = []
        while len(replies) < len(commands):
            reply = self.reader.gets()
            if reply is False:
                data = self.sock.recv(1 << 16)
                if not data:
                    raise ConnectionResetError("Redis closed the connection")
                self.reader.feed(data)
            else:
                replies.append(reply)
        return replies

    def _connect(self) -> None:
        options = self.options
        try:
            if options.get("connection_class") is UnixDomainSocketConnection:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(CONNECT_TIMEOUT)
                sock.connect(options["path"])
            else:
                host = options.get("host", "localhost")
                sock = socket.create_connection((host, options.get("port", 6379)), timeout=CONNECT_TIMEOUT)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if options.get("connection_class") is SSLConnection:
                    sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc}") from None
        sock.settimeout(self.timeout)
        self.sock, self.reader = sock, hiredis.Reader()
        setup = setup_commands(options)
        if setup:
            self.execute(setup)

    def close(self) -> None:
        """Close the socket; the next call reconnects."""
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None
