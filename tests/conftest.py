"""Shared fixtures: the cast (admin, engineer, viewer, outsider), API clients with real tokens,
and real processes (a Celery worker, a uvicorn web server) on the real test database."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from console.audit import Actor
from console.models import Membership, Team
from console.services import create_token

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="session", autouse=True)
def _real_postgres(django_db_setup: Any, django_db_blocker: Any) -> None:
    with django_db_blocker.unblock():
        if connection.vendor != "postgresql":
            pytest.exit("the suite runs against PostgreSQL: set DATABASE_URL=postgres://...", returncode=2)


@pytest.fixture
def teams(db: Any) -> dict[str, Team]:
    return {
        "ml": Team.objects.create(name="ml", description="Machine learning"),
        "other": Team.objects.create(name="other", description="Someone else"),
    }


@pytest.fixture
def cast(teams: dict[str, Team], django_user_model: Any) -> dict[str, Any]:
    """admin (superuser), engineer and viewer of team ml, outsider (engineer of team other)."""
    people = {
        "admin": django_user_model.objects.create_superuser("admin", password=PASSWORD),
        "engineer": django_user_model.objects.create_user("engineer", password=PASSWORD),
        "viewer": django_user_model.objects.create_user("viewer", password=PASSWORD),
        "outsider": django_user_model.objects.create_user("outsider", password=PASSWORD),
    }
    Membership.objects.create(team=teams["ml"], user=people["engineer"], role="engineer")
    Membership.objects.create(team=teams["ml"], user=people["viewer"], role="viewer")
    Membership.objects.create(team=teams["other"], user=people["outsider"], role="engineer")
    return people


@pytest.fixture
def browser_as(cast: dict[str, Any]) -> Callable[[str], Client]:
    """A console client signed in as one of the cast (by role name)."""
    def make(who: str) -> Client:
        client = Client()
        client.force_login(cast[who])
        return client

    return make


@pytest.fixture
def client_for(cast: dict[str, Any]) -> Callable[..., APIClient]:
    """An API client that sends a real bearer token of `who` with the given scopes."""

    def make(who: str, *scopes: str, **token_options: Any) -> APIClient:
        user = cast[who]
        _, raw = create_token(actor=Actor.system("tests"), user=user, name=f"{who}-test",
                              scopes=list(scopes or ["read", "manage"]), **token_options)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return client

    return make


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(**overrides: str) -> dict[str, str]:
    """The test process's environment, pointed at the test database pytest-django created."""
    settings_dict = connection.settings_dict
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["DATABASE_URL"] = (
        f"postgres://{settings_dict['USER'] or 'postgres'}@{settings_dict['HOST'] or '127.0.0.1'}:"
        f"{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}"
    )
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PADDOCK_WEBHOOK_ALLOW_PRIVATE", "1")  # webhook tests' receivers listen on 127.0.0.1
    env.update(overrides)
    return env


def _wait_for(predicate: Callable[[], bool], process: subprocess.Popen[bytes], log: Path, what: str,
              timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if predicate():
            return
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{what} did not start within {timeout}s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Process:
    """A real child process of the suite and its log."""

    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def spawn_worker(log: Path, env: dict[str, str] | None = None, name: str = "test-worker") -> Process:
    """A real Celery worker (solo pool + the batcher thread) on the test database."""
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "console", "worker", "-P", "solo", "-l", "INFO",
             "-n", f"{name}-{os.getpid()}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env or child_env(), stdout=out, stderr=subprocess.STDOUT,
        )
    process = Process(popen, log)
    _wait_for(lambda: b" ready." in log.read_bytes(), popen, log, "celery worker")
    return process


def spawn_web(log: Path, env: dict[str, str] | None = None) -> tuple[Process, str]:
    """A real web server (serving.v2.server: uvicorn + console.asgi) on a free port; returns it and its URL."""
    port = free_port()
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "serving.v2.server", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=env or child_env(), stdout=out, stderr=subprocess.STDOUT,
        )
    _wait_for(lambda: port_open(port), popen, log, "uvicorn")
    return Process(popen, log), f"http://127.0.0.1:{port}"


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def stop(process: Process) -> None:
    _stop(process.popen)


@pytest.fixture(scope="session")
def celery_worker(_real_postgres: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """A real Celery worker process consuming this session's queue and serving its models."""
    process = spawn_worker(tmp_path_factory.mktemp("worker") / "worker.log")
    yield process
    stop(process)


@pytest.fixture(scope="session")
def web_server(_real_postgres: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real uvicorn serving console.asgi on a free port; yields its base URL."""
    process, url = spawn_web(tmp_path_factory.mktemp("web") / "web.log")
    yield url
    stop(process)


@pytest.fixture(scope="module")
def beat(celery_worker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """A real Celery beat, checking rollout gates every half second (the session's worker runs them)."""
    folder = tmp_path_factory.mktemp("beat")
    log = folder / "beat.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "console", "beat", "-l", "INFO", "-s", str(folder / "schedule")],
            cwd=ROOT, env=child_env(PADDOCK_ROLLOUT_TICK_SECONDS="0.5"),
            stdout=out, stderr=subprocess.STDOUT,
        )
    process = Process(popen, log)
    _wait_for(lambda: b"beat: Starting" in log.read_bytes(), popen, log, "celery beat")
    yield process
    stop(process)


def wait_until(predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.1) -> Any:
    """Poll until predicate() is truthy; return its value or fail with a clear message."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture(autouse=True)
def _empty_media_root() -> Iterator[None]:
    """Each test starts with empty artifact and job storage (the folder itself is shared with workers)."""
    import shutil

    from django.conf import settings

    yield
    shutil.rmtree(Path(settings.MEDIA_ROOT) / "models", ignore_errors=True)
    shutil.rmtree(Path(settings.MEDIA_ROOT) / "jobs", ignore_errors=True)


def ready_version(model: Any, seed: int) -> Any:
    """A version marked ready without a worker: for tests of what happens around serving."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from registry import services
    from registry.models import ModelVersion
    from tests import models as built

    version, _ = services.register_version(actor=Actor.system("tests"), model=model,
                                           upload=SimpleUploadedFile("m.onnx", built.mlp_onnx(seed=seed)))
    # Validation is not under test here: the version is ready at once, through the service that
    # ends a validation (a model's first ready version becomes its champion there).
    ModelVersion.objects.filter(pk=version.pk).update(status="validating")
    services.finish_validation(actor=Actor.system("tests"), version_id=version.pk, report={"provider": "tests"})
    version.refresh_from_db()
    return version


@pytest.fixture
def iris(cast: dict[str, Any], teams: dict[str, Any]) -> Any:
    """Model `iris` of team ml with two ready versions (not held by any worker), v1 deployed."""
    from registry import services
    from serving.models import Deployment

    model = services.create_model(actor=Actor(user=cast["engineer"]), name="iris", team=teams["ml"])
    ready_version(model, 1)
    ready_version(model, 2)
    Deployment.objects.create(model=model, active_version=model.versions.get(number=1))
    return model
