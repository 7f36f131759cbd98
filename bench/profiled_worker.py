"""The bench's Celery worker under cProfile, for finding where a job's or a stream's time goes:
`BENCH_PROFILE_WORKER=<folder> make bench …` starts the worker through this module (servers.py),
which profiles each task in the solo pool's main thread (a batch job's chunks and its assembly:
`<folder>/<task>-<id>.prof`) and the stream runner's thread (`<folder>/streams-<pid>.prof`, written
when the worker stops). Read them with `python -m pstats` or `bench.profiled_worker.summary`."""

import cProfile
import os
import pstats
import sys
from pathlib import Path
from typing import Any

FOLDER = Path(os.environ.get("BENCH_PROFILE_WORKER", "."))
_running: dict[str, cProfile.Profile] = {}


def _profile_tasks() -> None:
    from celery.signals import task_postrun, task_prerun

    @task_prerun.connect(weak=False)
    def started(task_id: str, **_: Any) -> None:
        profile = _running[task_id] = cProfile.Profile()
        profile.enable()

    @task_postrun.connect(weak=False)
    def finished(task_id: str, task: Any, **_: Any) -> None:
        profile = _running.pop(task_id, None)
        if profile is not None:
            profile.disable()
            profile.dump_stats(FOLDER / f"{task.name.rsplit('.', 1)[-1]}-{task_id}.prof")


def _profile_streams() -> None:
    from workers.streams import runner

    plain = runner.StreamRunner.run

    def run(self: runner.StreamRunner) -> None:
        profile = cProfile.Profile()
        profile.enable()
        try:
            plain(self)
        finally:
            profile.disable()
            profile.dump_stats(FOLDER / f"streams-{os.getpid()}.prof")

    runner.StreamRunner.run = run  # type: ignore[method-assign]


def summary(prefix: str, top: int = 30, folder: Path = FOLDER) -> None:
    """The profiles whose names start with `prefix`, merged, by cumulative time."""
    files = sorted(str(path) for path in folder.glob(f"{prefix}*.prof"))
    if files:
        pstats.Stats(*files).sort_stats("cumulative").print_stats(top)


if __name__ == "__main__":
    import django

    FOLDER.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    django.setup()
    _profile_tasks()
    _profile_streams()
    from celery.__main__ import main

    sys.argv = ["celery", *sys.argv[1:]]
    main()
