"""A real HTTP receiver for webhook tests: http.server in a thread on 127.0.0.1, answering each
POST with the next status of its script (then the last one again), and keeping what it got. Its
first `holds` requests hang (the receiver a tenant aims at Paddock to tie it up) until `release`
is set, or HOLD_LIMIT_SECONDS pass: `holding` says how many hang now, `most_held` the most at once."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOLD_LIMIT_SECONDS = 300.0  # a hang guard: past every timeout a test sets


@dataclass(frozen=True)
class Received:
    """One request as the receiver read it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    """The server, its URL, its script of answers and what it received."""

    def __init__(self, statuses: list[int], delay: float = 0.0, location: str = "", holds: int = 0) -> None:
        self.statuses, self.delay, self.location, self.holds = list(statuses), delay, location, holds
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.holding = self.most_held = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with owner.lock:
                    owner.received.append(Received(self.path, dict(self.headers.items()), body, time.monotonic()))
                    status = owner.statuses[min(len(owner.received), len(owner.statuses)) - 1]
                    held = len(owner.received) <= owner.holds
                    if held:
                        owner.holding += 1
                        owner.most_held = max(owner.most_held, owner.holding)
                if held:
                    owner.release.wait(HOLD_LIMIT_SECONDS)
                    with owner.lock:
                        owner.holding -= 1
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
        receiver.release.set()
        receiver.server.shutdown()
        receiver.server.server_close()
