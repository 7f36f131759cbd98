"""A real HTTP receiver for webhook tests: http.server in a thread on 127.0.0.1, answering each
POST with the next status of its script (then the last one again), and keeping what it got."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request as the receiver read it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    """The server, its URL, its script of answers and what it received."""

    def __init__(self, statuses: list[int], delay: float = 0.0, location: str = "") -> None:
        self.statuses, self.delay, self.location = list(statuses), delay, location
        self.received: list[Received] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with owner.lock:
                    owner.received.append(Received(self.path, dict(self.headers.items()), body, time.monotonic()))
                    status = owner.statuses[min(len(owner.received), len(owner.statuses)) - 1]
                time.sleep(owner.delay)
                self.send_response(status)
                if owner.location:
                    self.send_header("Location", owner.location)
                answer = b"ok" if status < 300 else b"receiver says no"
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/paddock"

    def events(self) -> list[str]:
        """The Paddock-Event header of each request, in the order they came."""
        with self.lock:
            return [request.headers["Paddock-Event"] for request in self.received]


@contextmanager
def running(statuses: list[int], **options: Any) -> Iterator[Receiver]:
    """A receiver serving in a thread until the block ends."""
    receiver = Receiver(statuses, **options)
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
