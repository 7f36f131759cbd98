"""Faults under load on `make run` itself (issue 21): one `manage.py runstack` started as a user
does (its own SQLite, its embedded Redis, free ports), 64 clients on the demo model, and a fault
injected into a process runstack started: SIGKILL of the worker, of the web process, of the
Redis. Each test prints its row of docs/reliability.md's table, and appends it to the file
named by PADDOCK_RELIABILITY_ROWS when that is set."""

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from serving.v2.wire import ENTRY_FIELD, GROUP, unpack_request
from tests.conftest import wait_until
from tests.reliability.load import CLIENTS, Load, Outcome, Summary, report, summarize
from tests.reliability.stack import GUARD_SECONDS, REDIS, WEB, WORKER, Stack, runstack

WARM_SECONDS = 3.0  # load before the fault, so that the fault lands on a busy stack
SETTLE_SECONDS = 0.05  # a stopped worker's last write (replies, XACK) reaches Redis before we look


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`make run`'s runstack, as a user runs it, for the module's tests; Ctrl-C at the end."""
    with runstack(tmp_path_factory.mktemp("make-run")) as started:
        yield started


def state(pid: int) -> str:
    """The process's state letter in /proc (R, S, T: stopped, Z: zombie), X when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def kill(pid: int) -> tuple[float, float]:
    """SIGKILL `pid`; return when it was sent and when the process was gone (dead or a zombie:
    its sockets closed), both monotonic."""
    os.kill(pid, signal.SIGKILL)
    fault_at = time.monotonic()
    wait_until(lambda: state(pid) in ("Z", "X"), timeout=10, interval=0.001)
    return fault_at, time.monotonic()


def run_with_fault(stack: Stack, fault: str,
                   inject: Callable[[], tuple[float, float]]) -> tuple[Summary, list[Outcome]]:
    """64 clients for WARM_SECONDS, then `inject()` (returns the fault's and the process's end
    time), then until the service answers 200 steadily again; the figures and every outcome."""
    load = Load(stack.port, stack.token, "demo-mlp")
    load.start()
    try:
        assert load.wait_for(lambda outcomes: len(outcomes) > 0 and time.monotonic() - load.started > WARM_SECONDS,
                             timeout=GUARD_SECONDS), "the load never got an answer"
        fault_at, gone_at = inject()
        steady = load.wait_steady(gone_at, timeout=GUARD_SECONDS)
    finally:
        outcomes = load.stop()
    summary = summarize(outcomes, fault=fault, fault_at=fault_at, gone_at=gone_at, clients=CLIENTS,
                        refused=load.refused)
    report(summary)
    assert steady, f"{fault}: not answering 200 steadily within {GUARD_SECONDS:g} s\n{summary.report()}"
    return summary, outcomes


def freeze_holding_requests(stack: Stack, pid: int) -> list[int]:
    """SIGSTOP the worker `pid` at a moment it holds requests it has read but not answered (its
    pending entries in the demo's stream, read while it is frozen), and return those requests'
    numbers (each entry's first input value). The SIGKILL that follows strands them."""
    client: Any = stack.redis()  # redis-py's stubs type replies for any decoding
    stream = wait_until(lambda: next(iter(client.scan_iter(match="*:requests")), None), timeout=30)
    consumer = f"-{pid}".encode()
    for _ in range(200):
        os.kill(pid, signal.SIGSTOP)
        wait_until(lambda: state(pid) == "T", timeout=10, interval=0.001)
        time.sleep(SETTLE_SECONDS)
        pending = client.xpending_range(stream, GROUP, min="-", max="+", count=10_000)
        held = [entry["message_id"] for entry in pending if entry["consumer"].endswith(consumer)]
        if held:
            numbers = []
            for entry_id in held:
                for _, fields in client.xrange(stream, entry_id, entry_id):
                    job = unpack_request(entry_id, fields[ENTRY_FIELD.encode()])
                    numbers.append(int(job.inputs["input"][0, 0]))
            return numbers
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError("the worker never held a request")


def test_a_sigkilled_worker_under_load_loses_no_request_and_its_held_ones_are_answered(stack: Stack) -> None:
    stack.serving()
    worker = stack.child(WORKER)
    held: list[int] = []
    killed: list[float] = []

    def inject() -> tuple[float, float]:
        held.extend(freeze_holding_requests(stack, worker))
        fault_at, gone_at = kill(worker)
        killed.append(fault_at)
        return fault_at, gone_at

    summary, outcomes = run_with_fault(stack, "SIGKILL of the worker", inject)
    assert (summary.lost, summary.hung, summary.failed_in_flight, summary.refused) == (0, 0, 0, 0), summary.report()
    assert {o.status for o in outcomes if o.kind != "ok"} <= {503, 504}, summary.report()
    # What the dead worker held was claimed by the one runstack started again, and answered 200
    # (after the kill: the dead one had not answered them).
    by_number = {o.number: o for o in outcomes}
    unanswered = [by_number[n] for n in held if by_number[n].kind != "ok" or by_number[n].ended < killed[0]]
    assert held and not unanswered, unanswered
    print(f"{len(held)} request(s) held by the killed worker, answered 200 after "
          f"{max(by_number[n].ended - by_number[n].sent for n in held):.1f} s at most")
    log = stack.log.read_text()
    assert "[runstack] worker exited with status -9; starting it again in 1 s" in log
    assert "abandoned request(s) of demo-mlp" in log
    assert stack.child(WORKER) != worker
    assert summary.recover_s is not None


def test_a_sigkilled_web_process_under_load_fails_only_its_requests_in_flight(stack: Stack) -> None:
    stack.serving()
    web, worker = stack.child(WEB), stack.child(WORKER)
    summary, outcomes = run_with_fault(stack, "SIGKILL of the web process", lambda: kill(web))
    # Only the requests the killed process had taken failed (the kill landed under load: some
    # had); nothing else failed, got an error, or hung.
    assert (summary.lost, summary.hung, summary.clear_error) == (0, 0, 0), summary.report()
    assert summary.failed_in_flight > 0, summary.report()
    assert stack.child(WEB) != web and stack.child(WORKER) == worker
    assert summary.recover_s is not None


def test_a_restarted_redis_gives_clear_503s_then_200_without_restarting_web_or_worker(stack: Stack) -> None:
    stack.serving()
    web, worker, server = stack.child(WEB), stack.child(WORKER), stack.child(REDIS)
    summary, outcomes = run_with_fault(stack, "SIGKILL of the Redis (runstack starts it again)",
                                       lambda: kill(server))
    assert (summary.lost, summary.hung, summary.failed_in_flight, summary.refused) == (0, 0, 0, 0), summary.report()
    errors = [o for o in outcomes if o.kind == "clear_error"]
    assert errors, "the outage went unnoticed"
    assert {o.status for o in errors} == {503}, summary.report()
    assert all("Redis" in o.message for o in errors), summary.report()
    assert stack.child(REDIS) != server  # runstack started it again
    assert (stack.child(WEB), stack.child(WORKER)) == (web, worker)  # neither was restarted
    assert summary.recover_s is not None
