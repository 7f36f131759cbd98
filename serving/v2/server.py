"""The web server entry point for production and `make run`: uvicorn (uvloop + httptools)
serving console.asgi, with one change on the wire: the writes a connection makes in one
event-loop tick go out in one syscall. uvicorn writes a response's headers and its body
separately; on the infer route that was two sends per request.

Websockets are served without permessage-deflate unless asked (`--ws-deflate`): uvicorn offers
it by default and clients such as `websockets` accept it, and then every message is zlib'd on
both sides. Tensors compress poorly and the CPU is the serving budget: on M2 (115 KB JSON per
message) the stream did 94 req/s with it against 198 over REST (docs/benchmarks.md).

    python -m serving.v2.server --host 0.0.0.0 --port 8000 [--workers N] [--ws-deflate]"""

import argparse
import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """Wraps an asyncio transport: write() buffers until the end of the current loop tick."""

    __slots__ = ("_transport", "_buffer", "_scheduled", "_loop")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._buffer: list[bytes] = []
        self._scheduled = False
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        """Buffer the write; the buffered writes leave together at the end of this loop tick."""
        self._buffer.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._buffer and not self._transport.is_closing():
            data = self._buffer[0] if len(self._buffer) == 1 else b"".join(self._buffer)
            self._transport.write(data)
        self._buffer.clear()

    def close(self) -> None:
        """Flush what is buffered, then close."""
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a transport that coalesces a tick's writes into one syscall."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport))  # type: ignore[arg-type]


def main() -> None:
    """Parse the command line and run uvicorn on console.asgi with the coalescing protocol."""
    parser = argparse.ArgumentParser(description="Paddock web server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--proxy-headers", action="store_true", help="trust X-Forwarded-* from the proxy")
    parser.add_argument("--ws-deflate", action="store_true",
                        help="offer permessage-deflate on websockets (off: it costs more CPU than it saves on tensors)")
    args = parser.parse_args()
    uvicorn.run("console.asgi:application", host=args.host, port=args.port, workers=args.workers,
                http=CoalescingHttpToolsProtocol, loop="uvloop", access_log=False, log_level=args.log_level,
                proxy_headers=args.proxy_headers, forwarded_allow_ips="*" if args.proxy_headers else None,
                ws_per_message_deflate=args.ws_deflate)


if __name__ == "__main__":
    main()
