"""`make run`'s supervisor: keeps web, worker, beat (and the Redis it started) running. A child
that exits is started again after a backoff (1 s, doubling to 30 s, reset after a minute up),
with a log line; one that crash-loops (CRASH_LOOP_EXITS exits within CRASH_LOOP_SECONDS) is
reported and left down while the rest keeps serving. A worker that recycled itself (it exits with
RECYCLED_EXIT_STATUS after draining: memory past its limit) is started again at once and not
counted as a crash. Only Ctrl-C or SIGTERM stops everything."""

import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

FIRST_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS = 1.0, 30.0
STEADY_SECONDS = 60.0  # up this long: the next exit starts the backoff again from its first step
CRASH_LOOP_EXITS, CRASH_LOOP_SECONDS = 5, 60.0
POLL_SECONDS = 0.2
RECYCLED_EXIT_STATUS = 75  # workers/bootsteps.py: a worker that drained and exited to be started afresh


@dataclass
class Child:
    """One supervised process: how to start it, the running one, and its recent exits."""

    name: str
    command: list[str]
    popen: "subprocess.Popen[bytes] | None" = None
    started_at: float = 0.0
    exits: deque[float] = field(default_factory=deque)
    backoff: float = FIRST_BACKOFF_SECONDS
    restart_at: float | None = None
    given_up: bool = False

    def start(self) -> None:
        """Start (or start again) the process in a session of its own, so Ctrl-C reaches only us."""
        self.popen = subprocess.Popen(self.command, start_new_session=True)
        self.started_at = time.monotonic()
        self.restart_at = None


class Supervisor:
    """Starts the children, restarts the ones that die, and stops them all on request."""

    def __init__(self, children: list[Child], log: Callable[[str], None], stop_seconds: float = 10.0) -> None:
        self.children = children
        self.log = log
        self.stopping = False
        self.stop_seconds = stop_seconds  # how long stopping children may take (a worker drains) before SIGKILL

    def request_stop(self, signum: int, frame: object) -> None:
        """Ctrl-C or SIGTERM: leave the loop and stop every child."""
        self.stopping = True

    def run(self) -> None:
        """Supervise until Ctrl-C or SIGTERM, then stop the children (the first started last)."""
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)
        for child in self.children:
            if child.popen is None:
                child.start()
        try:
            while not self.stopping:
                self.check(time.monotonic())
                time.sleep(POLL_SECONDS)
        finally:
            self.stop()

    def check(self, now: float) -> None:
        """One look at every child: note an exit, and start again those whose backoff has passed."""
        for child in self.children:
            if child.given_up:
                continue
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.start()
                    self.log(f"{child.name} started again (pid {child.popen.pid if child.popen else '?'})")
                continue
            if child.popen is None or child.popen.poll() is None:
                continue
            self._exited(child, now)

    def _exited(self, child: Child, now: float) -> None:
        code = child.popen.returncode if child.popen else None
        if code == RECYCLED_EXIT_STATUS:
            self.log(f"{child.name} recycled itself (it drained and exited); starting it again now")
            child.restart_at = now
            return
        if now - child.started_at >= STEADY_SECONDS:
            child.backoff = FIRST_BACKOFF_SECONDS
        child.exits.append(now)
        while child.exits and now - child.exits[0] > CRASH_LOOP_SECONDS:
            child.exits.popleft()
        if len(child.exits) >= CRASH_LOOP_EXITS:
            child.given_up = True
            self.log(f"{child.name} exited {len(child.exits)} times within {CRASH_LOOP_SECONDS:.0f} s "
                     f"(last exit status {code}): not starting it again; the rest keeps serving")
            return
        self.log(f"{child.name} exited with status {code}; starting it again in {child.backoff:g} s")
        child.restart_at = now + child.backoff
        child.backoff = min(MAX_BACKOFF_SECONDS, child.backoff * 2)

    def stop(self) -> None:
        """SIGTERM to every running child, the first started last (the Redis the others flush to),
        then SIGKILL to any still running after `stop_seconds`."""
        running = [c.popen for c in reversed(self.children) if c.popen is not None and c.popen.poll() is None]
        for popen in running:
            popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_seconds
        for popen in running:
            try:
                popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                popen.kill()
