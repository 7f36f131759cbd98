"""make run's supervisor (console/supervisor.py) with real child processes: a child that dies is
started again after its backoff, one that crash-loops is reported and left down while the others
keep running, and stopping ends every child."""

import sys
import time
from typing import Any

import pytest

from console import supervisor
from console.supervisor import Child, Supervisor
from tests.conftest import wait_until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(300)"]
CRASHER = [sys.executable, "-c", "raise SystemExit(3)"]


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "FIRST_BACKOFF_SECONDS", 0.05)
    monkeypatch.setattr(supervisor, "MAX_BACKOFF_SECONDS", 0.2)


def checked_until(boss: Supervisor, until: Any, timeout: float = 20) -> None:
    """Run the supervisor's checks, as its loop does, until `until()` holds."""

    def done() -> bool:
        boss.check(time.monotonic())
        return bool(until())

    wait_until(done, timeout=timeout, interval=0.02)


def supervise(children: list[Child], lines: list[str], until: Any, timeout: float = 20) -> Supervisor:
    """Start the children and run the supervisor's checks until `until()` holds."""
    boss = Supervisor(children, lines.append)
    for child in children:
        child.backoff = supervisor.FIRST_BACKOFF_SECONDS
        child.start()
    checked_until(boss, until, timeout)
    return boss


def test_a_killed_child_is_started_again_with_a_log_line() -> None:
    worker, web = Child("worker", SLEEPER), Child("web", SLEEPER)
    lines: list[str] = []
    boss = supervise([worker, web], lines, lambda: True)
    try:
        first = worker.popen
        assert first is not None
        first.kill()
        checked_until(boss, lambda: worker.popen is not first and worker.popen is not None, timeout=10)
        assert worker.popen is not None and worker.popen.poll() is None
        assert lines[0] == "worker exited with status -9; starting it again in 0.05 s"
        assert lines[1] == f"worker started again (pid {worker.popen.pid})"
        assert web.popen is not None and web.popen.poll() is None  # the others never stopped
    finally:
        boss.stop()


def test_a_crash_looping_child_is_reported_and_the_rest_keeps_serving() -> None:
    crasher, web = Child("beat", CRASHER), Child("web", SLEEPER)
    lines: list[str] = []
    boss = supervise([crasher, web], lines, lambda: crasher.given_up)
    try:
        assert lines[-1] == ("beat exited 5 times within 60 s (last exit status 3): not starting it again; "
                             "the rest keeps serving")
        assert sum(line.startswith("beat exited with status 3; starting it again") for line in lines) == 4
        assert web.popen is not None and web.popen.poll() is None
    finally:
        boss.stop()


def test_stopping_ends_every_child() -> None:
    children = [Child("redis", SLEEPER), Child("web", SLEEPER), Child("worker", SLEEPER)]
    boss = supervise(children, [], lambda: True)
    boss.stop()
    assert all(child.popen is not None and child.popen.poll() is not None for child in children)


def test_a_worker_that_recycles_itself_is_started_again_at_once_and_never_given_up() -> None:
    """A worker past its memory limit drains and exits with RECYCLED_EXIT_STATUS: that is no
    crash, however often it happens (here more often than the crash-loop limit)."""
    recycler = Child("worker", [sys.executable, "-c", f"raise SystemExit({supervisor.RECYCLED_EXIT_STATUS})"])
    lines: list[str] = []
    exits = supervisor.CRASH_LOOP_EXITS + 2
    boss = supervise([recycler], lines, lambda: lines.count(
        "worker recycled itself (it drained and exited); starting it again now") >= exits)
    try:
        assert not recycler.given_up and not recycler.exits and recycler.backoff == supervisor.FIRST_BACKOFF_SECONDS
        assert not any("not starting it again" in line for line in lines)
    finally:
        boss.stop()
