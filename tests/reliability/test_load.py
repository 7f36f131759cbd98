"""The load generator's own checks (tests/reliability/load.py): against a server that answers each
way a faulty stack can, every request is classified as it ended; and the figures of a run with a
fault (in flight, lost, time to recover) are what their definitions say."""

import asyncio
import re
import threading
from collections.abc import Iterator

import orjson
import pytest

from tests.conftest import free_port
from tests.reliability.load import Load, Outcome, recovery, summarize

# What the server does with request number n, by n % 6.
BEHAVIOUR = ["ok", "clear_error", "unclear", "wrong_id", "reset", "hang"]


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", head)[1])  # type: ignore[index]
            number = int(orjson.loads(await reader.readexactly(length))["id"])
            behaviour = BEHAVIOUR[number % len(BEHAVIOUR)]
            if behaviour == "reset":
                writer.transport.abort()
                return
            if behaviour == "hang":
                await asyncio.sleep(3600)
            status, body = {
                "ok": (200, orjson.dumps({"id": str(number), "outputs": [{"name": "y"}]})),
                "clear_error": (503, b'{"error":"the request queue is unavailable; retry later"}'),
                "unclear": (500, b"Internal Server Error"),
                "wrong_id": (200, orjson.dumps({"id": str(number + 1), "outputs": [{"name": "y"}]})),
            }[behaviour]
            writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        writer.close()


@pytest.fixture
def server_port() -> Iterator[int]:
    """A server on a free port that answers as BEHAVIOUR says, on a loop in a thread of its own."""
    port = free_port()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(asyncio.start_server(_answer, "127.0.0.1", port), loop).result(10)
    yield port

    async def shut() -> None:
        server.close()
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()

    asyncio.run_coroutine_threadsafe(shut(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_each_request_is_classified_by_how_it_ended(server_port: int) -> None:
    load = Load(server_port, "token", "m", clients=6, deadline_s=0.05, hang_margin_s=2.0)
    load.start()
    try:
        assert load.wait_for(lambda seen: len({o.number % len(BEHAVIOUR) for o in seen}) == len(BEHAVIOUR), 30)
    finally:
        outcomes = load.stop()
    expected = {"ok": "ok", "clear_error": "clear_error", "unclear": "unclear", "wrong_id": "unclear",
                "reset": "failed", "hang": "hung"}
    assert {(o.number, o.kind) for o in outcomes} == {
        (o.number, expected[BEHAVIOUR[o.number % len(BEHAVIOUR)]]) for o in outcomes}
    errors = {o.message for o in outcomes if o.kind == "clear_error"}
    assert errors == {"the request queue is unavailable; retry later"}
    assert {o.status for o in outcomes if o.kind == "hung"} == {None}


def outcome(number: int, sent: float, ended: float, kind: str = "ok", connected: float | None = None) -> Outcome:
    """A request's outcome; on a connection opened just before it was sent unless `connected` says."""
    return Outcome(number, 0, sent, ended, 200 if kind == "ok" else None, kind, "" if kind == "ok" else kind,
                   sent if connected is None else connected)


def test_a_run_with_a_fault_is_summed_up_by_its_definitions() -> None:
    outcomes = [
        outcome(1, 9.0, 9.5),
        outcome(2, 9.8, 10.05, "failed"),  # in flight when the process died at 10.0-10.1
        outcome(3, 10.2, 10.3, "failed"),  # on a connection opened after it was gone: lost
        outcome(9, 10.15, 10.2, "failed", connected=5.0),  # written to its connection after it died: in flight
        outcome(4, 10.0, 10.5),  # sent before it was gone: says nothing of recovery
        outcome(5, 10.4, 11.0),  # the first 200 after the last failure, sent after the fault
        outcome(6, 10.5, 11.2),
        outcome(7, 10.6, 11.4, "unclear"),
    ]
    summary = summarize(outcomes[:7], fault="f", fault_at=10.0, gone_at=10.1, clients=2, refused=3)
    assert (summary.sent, summary.ok, summary.failed_in_flight, summary.lost, summary.hung) == (7, 4, 2, 1, 0)
    assert summary.recover_s == pytest.approx(1.0)
    assert summary.row() == "| f | 2 clients, 0 req/s before | 7 | 4 | 0 | 2 | 1 | 0 | 1.0 s |"
    # An error after the first 200 moves recovery past it; none after it: never recovered.
    assert recovery(outcomes + [outcome(8, 11.3, 11.5)], 10.0, 10.1) == pytest.approx(1.5)
    assert recovery(outcomes, 10.0, 10.1) is None
