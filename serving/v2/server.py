"""The web server entry point for production and `make run`: uvicorn (uvloop + httptools)
serving console.asgi, with one change on the wire: the writes a connection makes in one
event-loop tick go out in one syscall. uvicorn writes a response's headers and its body
separately; on the infer route that was two sends per request.

Websockets are served without permessage-deflate unless asked (`--ws-deflate`): uvicorn offers
it by default and clients such as `websockets` accept it, and then every message is zlib'd on
both sides. Tensors compress poorly and the CPU is the serving budget: on M2 (115 KB JSON per
message) the stream did 94 req/s with it against 198 over REST (docs/benchmarks.md).

A websocket message is at most PADDOCK_MAX_INFER_BYTES (REST's body limit) + WS_MESSAGE_OVERHEAD
(uvicorn's ws_max_size; a bigger one closes the socket with 1009), so a stream carries any request
REST takes. Tokens never reach the log: uvicorn logs each websocket's path with its query string,
and its handlers redact `token=` values (`?token=`, `access_token=`) and anything shaped like a
Paddock token (`RedactSecrets`).

    python -m serving.v2.server --host 0.0.0.0 --port 8000 [--workers N] [--ws-deflate]"""

import argparse
import asyncio
import copy
import logging
import os
import re
from typing import Any

import uvicorn
import uvicorn.config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Room for what a websocket message carries besides the request REST would take: its `id`.
WS_MESSAGE_OVERHEAD = 64 * 1024
_SECRETS = re.compile(r"(?i)(?<=token=)[^&;\s\"']+|(?<=pdk_)[A-Za-z0-9_-]+")


class RedactSecrets(logging.Filter):
    """Replaces `token=` query values and Paddock tokens in a log line with `[redacted]`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SECRETS.sub("[redacted]", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with RedactSecrets on each of its handlers (every worker
    process applies it too)."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config.setdefault("filters", {})["redact"] = {"()": "serving.v2.server.RedactSecrets"}  # not __main__
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact")
    return config


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
    parser.add_argument("--proxy-headers", action="store_true",
                        help="trust X-Forwarded-* from the proxies in PADDOCK_TRUSTED_PROXIES (default 127.0.0.1)")
    parser.add_argument("--ws-deflate", action="store_true",
                        help="offer permessage-deflate on websockets (off: it costs more CPU than it saves on tensors)")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    from django.conf import settings

    # X-Forwarded-* only from the proxy's own address: from anyone else it is a forged client
    # address (in the audit log, and for the per-address throttles).
    trusted = os.environ.get("PADDOCK_TRUSTED_PROXIES", "127.0.0.1") if args.proxy_headers else None
    uvicorn.run("console.asgi:application", host=args.host, port=args.port, workers=args.workers,
                http=CoalescingHttpToolsProtocol, loop="uvloop", access_log=False, log_level=args.log_level,
                log_config=log_config(), proxy_headers=args.proxy_headers, forwarded_allow_ips=trusted,
                ws_per_message_deflate=args.ws_deflate,
                ws_max_size=settings.PADDOCK_MAX_INFER_BYTES + WS_MESSAGE_OVERHEAD)


if __name__ == "__main__":
    main()
