"""A closed-loop websocket load generator: N sockets, each with one request in flight, for a
fixed time. Prints one JSON line like the wrk script's. Run as its own process.

It speaks the protocol itself (RFC 6455 over asyncio protocols, on uvloop when installed) to be
about as cheap per message as wrk is per request: the load generator shares the server's two
cores. With the `websockets` client it spent ~126 µs of CPU per message at M1 (wrk: ~30 µs per
request), CPU the server's processes did not get. Every message is one pre-masked frame (the
body is fixed, so its masked bytes are too); replies are parsed down to their opcode and length."""

import argparse
import asyncio
import base64
import functools
import json
import os
import struct
import time
from typing import cast
from urllib.parse import urlsplit

import numpy as np

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame: masked, as RFC 6455 requires of clients."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    data = np.frombuffer(payload, dtype=np.uint8)
    key = np.resize(np.frombuffer(mask, dtype=np.uint8), len(data))
    return header + mask + (data ^ key).tobytes()


class Client(asyncio.Protocol):
    """One socket: the upgrade, then send → wait for the reply → send, until the deadline."""

    transport: asyncio.Transport  # set by connection_made, which asyncio calls before any other callback

    def __init__(self, request: bytes, message: bytes, deadline: float, latencies: list[float],
                 errors: list[int], done: asyncio.Future[None]) -> None:
        self.request, self.message, self.deadline = request, message, deadline
        self.latencies, self.errors, self.done = latencies, errors, done
        self.buffer = bytearray()
        self.upgraded = False
        self.fragments: list[bytes] = []
        self.started = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # create_connection's transports are streams
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[:end]).split(b"\r\n", 1)[0]
            if b" 101 " not in status + b" ":
                self.finish(RuntimeError(f"upgrade refused: {status.decode(errors='replace')}"))
                return
            del self.buffer[:end + 4]
            self.upgraded = True
            self.send()
        self.read_frames()

    def read_frames(self) -> None:
        buffer = self.buffer
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            length, offset = second & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, offset = struct.unpack_from("!H", buffer, 2)[0], 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, offset = struct.unpack_from("!Q", buffer, 2)[0], 10
            if len(buffer) < offset + length:
                return
            payload = bytes(buffer[offset:offset + length])
            del buffer[:offset + length]
            opcode = first & 0x0F
            if opcode == PING:
                self.transport.write(frame(PONG, payload))
            elif opcode == CLOSE:
                self.finish(RuntimeError(f"the server closed the socket: {payload[2:].decode(errors='replace')}"))
                return
            elif opcode != PONG:
                self.fragments.append(payload)
                if first & 0x80:
                    self.message_received(b"".join(self.fragments))
                    self.fragments.clear()

    def message_received(self, reply: bytes) -> None:
        self.latencies.append(time.perf_counter() - self.started)
        if b'"error"' in reply[:200]:
            self.errors.append(1)
        if time.monotonic() < self.deadline:
            self.send()
        else:
            self.transport.write(frame(CLOSE, struct.pack("!H", 1000)))
            self.finish(None)

    def send(self) -> None:
        self.started = time.perf_counter()
        self.transport.write(self.message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.finish(exc or RuntimeError("the connection closed"))

    def finish(self, error: Exception | None) -> None:
        if not self.done.done():
            if error is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(error)
        if error is not None:
            self.transport.close()


async def main(url: str, token: str, body: bytes, clients: int, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    if parts.hostname is None:
        raise ValueError(f"no host in {url!r}")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    request = (f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
               f"Authorization: Bearer {token}\r\n\r\n").encode()
    message = frame(TEXT, body)
    latencies: list[float] = []
    errors: list[int] = []
    started = time.monotonic()
    deadline = started + seconds
    finished = []
    for _ in range(clients):
        done = loop.create_future()
        await loop.create_connection(
            functools.partial(Client, request, message, deadline, latencies, errors, done),
            parts.hostname, parts.port or 80)
        finished.append(done)
    await asyncio.gather(*finished)
    elapsed = time.monotonic() - started
    lat = np.array(latencies or [0.0]) * 1e6
    print("BENCH_RESULT " + json.dumps({
        "requests": len(latencies), "duration_us": int(elapsed * 1e6),
        "p50_us": int(np.percentile(lat, 50)), "p95_us": int(np.percentile(lat, 95)),
        "p99_us": int(np.percentile(lat, 99)), "errors": len(errors), "non_2xx": len(errors), "timeouts": 0,
    }), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--token", required=True)
    parser.add_argument("--body", required=True, help="file with one JSON request")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    with open(args.body, "rb") as handle:
        body = handle.read()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(args.url, args.token, body, args.clients, args.seconds))
    else:
        uvloop.run(main(args.url, args.token, body, args.clients, args.seconds))
