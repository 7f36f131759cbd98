"""Fixtures for the hostile-input suite: the real processes of tests/integration (a Celery worker,
Redis, PostgreSQL), with a web process of this folder's own whose memory each test can read."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Process, spawn_web, stop
from tests.integration.conftest import Served, _forget_wanted_versions, served  # noqa: F401 - fixtures

__all__ = ["Served", "WebProcess"]


class WebProcess:
    """The security suite's uvicorn: its URL, log and memory (VmRSS now, VmHWM the peak)."""

    def __init__(self, process: Process, url: str) -> None:
        self.process, self.url = process, url

    @property
    def pid(self) -> int:
        return self.process.popen.pid

    @property
    def log(self) -> Path:
        return self.process.log

    def memory_kb(self, field: str = "VmRSS") -> int:
        """A field of /proc/<pid>/status in kB: VmRSS (resident now) or VmHWM (the peak)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} for pid {self.pid}")


@pytest.fixture(scope="session")
def web_process(_real_postgres: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebProcess]:
    """One uvicorn for the whole security suite (its peak RSS is reported in docs/security.md)."""
    process, url = spawn_web(tmp_path_factory.mktemp("security-web") / "web.log")
    web = WebProcess(process, url)
    yield web
    PEAK_KB.append(web.memory_kb("VmHWM"))
    stop(process)


PEAK_KB: list[int] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The figure docs/security.md quotes: the security suite's web process at its largest."""
    if PEAK_KB:
        terminalreporter.write_line(f"security suite: web process peak RSS (VmHWM) {PEAK_KB[0] / 1024:.1f} MiB")


@pytest.fixture(scope="session")
def web_server(web_process: WebProcess) -> str:
    """The data plane's URL for tests/integration's fixtures (`served`): the security suite's web process."""
    return web_process.url


def settle_validations(timeout: float = 90) -> None:
    """Wait until the worker has validated every version a test uploaded: a validation still
    running when the test's tables are emptied deadlocks with the TRUNCATE (the worker locks the
    version, then the model; TRUNCATE takes every table at once)."""
    from registry.models import ModelVersion
    from tests.conftest import wait_until

    wait_until(lambda: not ModelVersion.objects.filter(status__in=["pending", "validating"]).exists(),
               timeout=timeout, interval=0.2)
