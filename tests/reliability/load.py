"""A load generator for fault tests: CLIENTS concurrent clients on one asyncio loop, in a thread of
its own so that the test injects its fault meanwhile. Each client keeps one HTTP/1.1 connection
and sends v2 REST infer requests back to back, each with a deadline (v2's `timeout` parameter)
and its own number, both as its `id` and as its first input value: its answer is known to be its
own, and an entry queued in Redis can be traced back to the request it came from.

Each request ends as one of:

    ok           200 with the answer to its own `id`
    clear_error  a v2 error body {"error": "..."} (its status and message are kept)
    failed       the connection broke after the request was written and before its answer
    unclear      any other answer (someone else's `id`, not v2's JSON): counted as lost
    hung         no answer within the deadline + HANG_MARGIN_SECONDS (the connection is dropped)

A refused connection sends nothing: it is counted (`refused`) and tried again after
RECONNECT_PAUSE_SECONDS. After an error a client waits ERROR_PAUSE_SECONDS, as one that honours
Retry-After would, rather than spinning on instant 503s.

`summarize` turns the outcomes of a run with one fault into a `Summary`:
- failed in flight: a `failed` request on a connection opened before the faulty process was gone
  that ended after the fault: one a killed web process had taken, or one written to its
  connection before the client could know it was dead; nobody can answer either any more;
- lost: any other `failed`, and every `unclear`: neither a 200 nor a clear error;
- recover_s: from the fault to the first 200 of a request sent after the faulty process was
  gone, from which on every request was answered 200 (the first such 200 after the last error)."""

import asyncio
import itertools
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import uvloop

CLIENTS = 64
DEADLINE_SECONDS = 20.0  # each request's `timeout`: past it the web process answers 504
HANG_MARGIN_SECONDS = 10.0  # no answer this long after the deadline: the request hung
CONNECT_TIMEOUT_SECONDS = 5.0
RECONNECT_PAUSE_SECONDS = 0.05
ERROR_PAUSE_SECONDS = 0.1
RATE_WINDOW_SECONDS = 3.0  # the throughput before the fault is measured over this window
TABLE_HEADER = ("| fault | load | sent | answered 200 | clear error | failed in flight | lost | hung | "
                "time to recover |\n|---|---|---:|---:|---:|---:|---:|---:|---:|")


@dataclass(slots=True)
class Outcome:
    """How one request ended, with its monotonic send and end times."""

    number: int
    client: int
    sent: float
    ended: float
    status: int | None  # None without an answer
    kind: str  # ok, clear_error, failed, unclear, hung
    message: str  # the v2 error's message, or what broke
    connected: float = 0.0  # when the connection the request went over was opened (monotonic)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body: status, headers (lower-cased), body."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head[:-4].split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split(" ", 2)[1]), headers, body


def classify(number: int, status: int, body: bytes) -> tuple[str, str]:
    """An answer's kind and message: ok (200 with request `number`'s own answer), clear_error
    (v2's {"error": message}) or unclear (anything else)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "unclear", f"{status} with a body that is not JSON: {body[:80]!r}"
    if not isinstance(document, dict):
        return "unclear", f"{status} with JSON that is not an object: {body[:80]!r}"
    if status == 200:
        if document.get("id") == str(number) and document.get("outputs"):
            return "ok", ""
        return "unclear", f"200 with the answer to id {document.get('id')!r}, not {number}"
    error = document.get("error")
    if isinstance(error, str) and error:
        return "clear_error", error
    return "unclear", f"{status} without a v2 error message: {body[:80]!r}"


class Load:
    """CLIENTS clients sending infer requests to one model until stopped; `outcomes` in the order
    the requests ended."""

    def __init__(self, port: int, token: str, model: str, *, clients: int = CLIENTS,
                 deadline_s: float = DEADLINE_SECONDS, hang_margin_s: float = HANG_MARGIN_SECONDS,
                 input_name: str = "input", width: int = 64) -> None:
        self.port, self.clients, self.deadline_s = port, clients, deadline_s
        self.hang_after = deadline_s + hang_margin_s
        self.outcomes: list[Outcome] = []
        self.refused = 0
        self.started = 0.0
        self._numbers = itertools.count(1)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._head = (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n").encode()
        rest = b",".join([b"0.1"] * (width - 1))
        self._middle = (b'","inputs":[{"name":"' + input_name.encode() + b'","datatype":"FP32","shape":[1,'
                        + str(width).encode() + b'],"data":[')
        self._tail = (b"," + rest + b']}],"parameters":{"timeout":' + str(int(deadline_s * 1_000_000)).encode()
                      + b"}}")

    def request(self, number: int) -> bytes:
        """Request `number`'s bytes: its number is its `id` and its first input value (exact in FP32)."""
        digits = str(number).encode()
        body = b'{"id":"' + digits + self._middle + digits + self._tail
        return self._head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body

    def start(self) -> None:
        """Start the clients in a thread of their own."""
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self._thread.start()

    def stop(self) -> list[Outcome]:
        """Let each client finish the request it is on (bounded by the hang guard), then return
        every outcome. Fails if a client is still busy well after that guard."""
        self._stopping.set()
        assert self._thread is not None
        self._thread.join(timeout=self.hang_after + CONNECT_TIMEOUT_SECONDS + 10)
        if self._thread.is_alive():
            raise AssertionError("a load client did not stop: a request outlived the hang guard")
        return list(self.outcomes)

    def steady(self, since: float, run: int | None = None) -> bool:
        """Whether the last `run` requests to end (default: two per client) were all answered 200
        and sent after `since`: the service is answering again, steadily."""
        run = run or 2 * self.clients
        recent = self.outcomes[-run:]
        return len(recent) == run and all(o.kind == "ok" and o.sent >= since for o in recent)

    def wait_steady(self, since: float, timeout: float) -> bool:
        """Poll `steady(since)` for up to `timeout` seconds (a hang guard, not a threshold)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.steady(since):
                return True
            time.sleep(0.1)
        return False

    def wait_for(self, predicate: Callable[[list[Outcome]], bool], timeout: float) -> bool:
        """Poll `predicate(outcomes so far)` for up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.outcomes):
                return True
            time.sleep(0.05)
        return False

    def _run(self) -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(self._main())

    async def _main(self) -> None:
        await asyncio.gather(*(self._client(index) for index in range(self.clients)))

    async def _client(self, client: int) -> None:
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        connected = 0.0
        while not self._stopping.is_set():
            if connection is None:
                try:
                    connection = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port),
                                                        CONNECT_TIMEOUT_SECONDS)
                    connected = time.monotonic()
                except (OSError, TimeoutError):
                    self.refused += 1
                    await asyncio.sleep(RECONNECT_PAUSE_SECONDS)
                    continue
            reader, writer = connection
            number = next(self._numbers)
            sent = time.monotonic()
            status: int | None = None
            closing = False
            try:
                writer.write(self.request(number))
                answered, headers, body = await asyncio.wait_for(read_response(reader), self.hang_after)
            except TimeoutError:
                kind, message = "hung", f"no answer within {self.hang_after:g} s"
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                kind, message = "failed", f"{type(exc).__name__}: {exc}"
            else:
                status = answered
                kind, message = classify(number, answered, body)
                closing = headers.get("connection", "").lower() == "close"
            self.outcomes.append(Outcome(number, client, sent, time.monotonic(), status, kind, message, connected))
            if kind in ("hung", "failed") or closing:
                writer.close()
                connection = None
            if kind != "ok":
                await asyncio.sleep(ERROR_PAUSE_SECONDS)
        if connection is not None:
            connection[1].close()


@dataclass
class Summary:
    """One fault's figures: the load, what was sent and how it ended, and the time to recover."""

    fault: str
    clients: int
    rate_before: float  # requests answered per second just before the fault
    sent: int
    ok: int
    clear_error: int
    failed_in_flight: int
    lost: int
    hung: int
    refused: int  # connections refused (nothing sent on them)
    recover_s: float | None  # None: it never answered 200 steadily again
    slowest_s: float  # the longest any request took to end
    errors: Counter[str] = field(default_factory=Counter)  # "status message" (digits as N) → count

    def row(self) -> str:
        """The docs/reliability.md table's row (TABLE_HEADER) for this fault."""
        recover = "never" if self.recover_s is None else f"{self.recover_s:.1f} s"
        return (f"| {self.fault} | {self.clients} clients, {self.rate_before:.0f} req/s before | {self.sent} | "
                f"{self.ok} | {self.clear_error} | {self.failed_in_flight} | {self.lost} | {self.hung} | "
                f"{recover} |")

    def report(self) -> str:
        """The row, the refused connections and the error messages, for the test's output."""
        lines = [self.row(), f"refused connections: {self.refused}; slowest request: {self.slowest_s:.2f} s"]
        lines += [f"  {count} × {error}" for error, count in self.errors.most_common(12)]
        return "\n".join(lines)


def summarize(outcomes: list[Outcome], *, fault: str, fault_at: float, gone_at: float, clients: int,
              refused: int = 0) -> Summary:
    """The figures of a run with one fault, injected at `fault_at` (monotonic), its process gone
    at `gone_at` (for a process kill; else `fault_at`)."""
    kinds = Counter(o.kind for o in outcomes)
    in_flight = sum(1 for o in outcomes if o.kind == "failed" and o.connected <= gone_at and o.ended >= fault_at)
    before = [o for o in outcomes if fault_at - RATE_WINDOW_SECONDS <= o.ended < fault_at]
    errors = Counter(f"{o.status or '-'} {re.sub(r'[0-9]+', 'N', o.message)[:160]}" for o in outcomes
                     if o.kind != "ok")
    return Summary(fault=fault, clients=clients, rate_before=len(before) / RATE_WINDOW_SECONDS, sent=len(outcomes),
                   ok=kinds["ok"], clear_error=kinds["clear_error"], failed_in_flight=in_flight,
                   lost=kinds["unclear"] + kinds["failed"] - in_flight, hung=kinds["hung"], refused=refused,
                   recover_s=recovery(outcomes, fault_at, gone_at),
                   slowest_s=max((o.ended - o.sent for o in outcomes), default=0.0), errors=errors)


def recovery(outcomes: list[Outcome], fault_at: float, gone_at: float) -> float | None:
    """Seconds from the fault to the first 200 of a request sent after `gone_at` that ended after
    the last request that was not answered 200; None if there is none."""
    last_bad = max((o.ended for o in outcomes if o.kind != "ok" and o.ended >= fault_at), default=fault_at)
    firsts = [o.ended for o in outcomes if o.kind == "ok" and o.sent >= gone_at and o.ended >= last_bad]
    return min(firsts) - fault_at if firsts else None


def report(summary: Summary) -> None:
    """Print the row (pytest -s shows it) and append it to PADDOCK_RELIABILITY_ROWS, if set."""
    print(f"\n{TABLE_HEADER}\n{summary.report()}")
    target = os.environ.get("PADDOCK_RELIABILITY_ROWS")
    if target:
        path = Path(target)
        with path.open("a") as rows:
            if path.stat().st_size == 0:
                rows.write(TABLE_HEADER + "\n")
            rows.write(summary.row() + "\n")
