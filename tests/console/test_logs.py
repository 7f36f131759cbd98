"""`make run`'s console is not flooded by the beat: its tasks' routine lines (sent, received,
succeeded, each every few seconds) are dropped where Celery logs them, their warnings and errors
are not, and other tasks' lines stay. In this process (settings.LOGGING applied by Django) and in
a real beat started as runstack starts it."""

import logging
import subprocess
import time
from pathlib import Path

import pytest
from celery.app import trace
from django.conf import settings

from console.management.commands.runstack import stack_commands
from tests.conftest import ROOT, Process, child_env, stop, wait_until

PERIODIC = "serving.tasks.evaluate_rollouts"  # beat sends it every PADDOCK_ROLLOUT_TICK_SECONDS
OTHER = "registry.tasks.validate_version"  # sent when a version is uploaded


def task_context(name: str) -> dict[str, object]:
    return {"id": "4f2c", "name": name, "return_value": None, "runtime": 0.01, "args": "()", "kwargs": "{}",
            "eta": None}


def test_the_beats_tasks_routine_lines_are_dropped_and_their_failures_kept(caplog: pytest.LogCaptureFixture) -> None:
    assert PERIODIC in {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    beat = logging.getLogger("celery.beat")
    with caplog.at_level(logging.INFO):
        beat.info("Scheduler: Sending due task %s (%s)", "evaluate-rollouts", PERIODIC)
        trace.info(trace.LOG_RECEIVED, task_context(PERIODIC))  # the worker's lines, as Celery writes them
        trace.info(trace.LOG_SUCCESS, task_context(PERIODIC))
        assert caplog.records == []

        trace.info(trace.LOG_SUCCESS, task_context(OTHER))
        beat.info("beat: Starting...")
        beat.warning("Scheduler: Sending due task %s (%s)", "evaluate-rollouts", PERIODIC)
        logging.getLogger("celery.app.trace").error("Task %s[4f2c] raised unexpected: boom", PERIODIC)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", f"Task {OTHER}[4f2c] succeeded in 0.01s: None"),
        ("INFO", "beat: Starting..."),
        ("WARNING", f"Scheduler: Sending due task evaluate-rollouts ({PERIODIC})"),
        ("ERROR", f"Task {PERIODIC}[4f2c] raised unexpected: boom"),
    ]


def test_runstacks_beat_sends_its_tasks_without_a_line_for_each(tmp_path: Path) -> None:
    command = stack_commands("127.0.0.1", "0")["beat"]
    level = command.index("-l") + 1
    assert command[level] == "INFO"  # still at INFO: beat's other lines, warnings and errors show
    # At DEBUG the beat also says each send went out ("<task> sent."): it sent, and said no more.
    command[level], command[command.index("-s") + 1] = "DEBUG", str(tmp_path / "schedule")
    log = tmp_path / "beat.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(command, cwd=ROOT, env=child_env(PADDOCK_ROLLOUT_TICK_SECONDS="0.2"),
                                 stdout=out, stderr=subprocess.STDOUT)
    beat = Process(popen, log)
    try:
        wait_until(lambda: b"beat: Starting" in log.read_bytes() or popen.poll() is not None, timeout=60)
        time.sleep(2)  # ten ticks of the rollout gates
    finally:
        stop(beat)
    output = beat.output()
    assert output.count(f"{PERIODIC} sent.") >= 5, output[-3000:]
    assert "Sending due task" not in output, output[-3000:]
