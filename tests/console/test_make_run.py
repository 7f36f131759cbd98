"""`make run`'s embedded default, run for real: SQLite, a Redis it starts itself, web + worker +
beat in the foreground, the admin user and the demo model; Ctrl-C stops everything."""

import functools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, port_open, wait_until

# Settings the suite's own environment carries that `make run` must not see.
SUITE_ONLY = ("DATABASE_URL", "MEDIA_ROOT", "PADDOCK_VAR_DIR", "PADDOCK_CELERY_QUEUE", "PADDOCK_REDIS_PREFIX",
              "SECRET_KEY", "DJANGO_SETTINGS_MODULE", "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE",
              "CSRF_COOKIE_SECURE")


def ctrl_c(stack: "subprocess.Popen[bytes]") -> None:
    """Stop runstack as a user does; fail (after killing its group) if it does not stop within 30 s."""
    stack.send_signal(signal.SIGINT)
    try:
        stack.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(stack.pid, signal.SIGKILL)
        pytest.fail("runstack did not stop on Ctrl-C")


def test_runstack_brings_everything_up_with_embedded_defaults_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    web_port, redis_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if key not in SUITE_ONLY}
    env.update(DEBUG="1", PADDOCK_VAR_DIR=str(tmp_path), PADDOCK_PORT=str(web_port),
               REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", PADDOCK_ADMIN_PASSWORD="demo-admin-pass")
    log = (tmp_path / "run.log").open("wb")
    stack = subprocess.Popen([sys.executable, "manage.py", "runstack"], cwd=ROOT, env=env, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: port_open(web_port) or stack.poll() is not None, timeout=90)
        assert stack.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
        assert port_open(redis_port), "the embedded Redis is not up"
        import redis

        embedded = redis.Redis(port=redis_port)
        # A ceiling that refuses writes when full, never one that evicts queued requests.
        assert embedded.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert embedded.config_get("maxmemory") == {"maxmemory": str(512 * 1024 * 1024)}
        assert (tmp_path / "paddock.sqlite3").exists()
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/login/") as response:
            assert response.status == 200
        raw = subprocess.run([sys.executable, "manage.py", "create_token", "admin", "--scope", "read"], cwd=ROOT,
                             env=env, capture_output=True, text=True, check=True).stdout.strip()

        def demo_version() -> dict | None:
            request = urllib.request.Request(f"http://127.0.0.1:{web_port}/api/v1/models/demo-mlp/versions/",
                                             headers={"Authorization": f"Bearer {raw}"})
            with urllib.request.urlopen(request) as response:
                versions = json.load(response)
            return versions[0] if versions and versions[0]["status"] == "ready" else None

        version = wait_until(demo_version, timeout=60, interval=0.5)
        assert version["aliases"] == ["champion"]
        assert version["validation_report"]["provider"] == "CPUExecutionProvider"
        output = (tmp_path / "run.log").read_text()
        assert "created admin user 'admin' with the password from PADDOCK_ADMIN_PASSWORD" in output
        assert f"Paddock is up on http://127.0.0.1:{web_port}/" in output
    finally:
        ctrl_c(stack)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (port_open(web_port) or port_open(redis_port)):
        time.sleep(0.2)
    assert not port_open(web_port) and not port_open(redis_port)


def test_check_deploy_is_clean_with_production_settings(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key not in SUITE_ONLY}
    env.update(DEBUG="0", SECRET_KEY="k" * 20 + "-production-secret-with-enough-entropy-7f3a9c2e1d",
               ALLOWED_HOSTS="paddock.example.com", DATABASE_URL="postgres://paddock@db:5432/paddock",
               PADDOCK_VAR_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key not in SUITE_ONLY}
    env.update(DEBUG="0", PADDOCK_VAR_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True,
                            text=True)
    assert result.returncode == 1
    assert "SECRET_KEY is not set (or set DEBUG=1 for development)" in result.stderr


def children_of(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`: their command lines."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
    return found


def contains(log: Path, line: str) -> bool:
    return line in log.read_text()


def replaced(parent: int, marker: str, old_pid: int) -> bool:
    """Whether a process other than `old_pid` with `marker` in its command runs under `parent`."""
    return any(marker in command and pid != old_pid for pid, command in children_of(parent).items())


def test_runstack_starts_a_killed_worker_and_web_process_again(tmp_path: Path) -> None:
    """make run as a user runs it: SIGKILL its worker, then its web process; each is started again
    by runstack itself and the demo model answers again, with no hand restart."""
    web_port, redis_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if key not in SUITE_ONLY}
    env.update(DEBUG="1", PADDOCK_VAR_DIR=str(tmp_path), PADDOCK_PORT=str(web_port),
               REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", PADDOCK_ADMIN_PASSWORD="demo-admin-pass")
    log_path = tmp_path / "run.log"
    stack = subprocess.Popen([sys.executable, "manage.py", "runstack"], cwd=ROOT, env=env,
                             stdout=log_path.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: port_open(web_port) or stack.poll() is not None, timeout=90)
        assert stack.poll() is None, log_path.read_text()[-3000:]
        token = subprocess.run([sys.executable, "manage.py", "create_token", "admin", "--scope", "predict"],
                               cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout.strip()
        body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64],
                                       "data": [0.1] * 64}]}).encode()

        def answers() -> bool:
            request = urllib.request.Request(f"http://127.0.0.1:{web_port}/v2/models/demo-mlp/infer", data=body,
                                             headers={"Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status == 200
            except OSError:  # refused, 503 while the worker loads the model, reset while web restarts
                return False

        wait_until(answers, timeout=90, interval=0.5)
        for name, marker in (("worker", "celery -A console worker"), ("web", "serving.v2.server")):
            [pid] = [pid for pid, command in children_of(stack.pid).items() if marker in command]
            os.kill(pid, signal.SIGKILL)
            logged = f"[runstack] {name} exited with status -9; starting it again in 1 s"
            wait_until(functools.partial(contains, log_path, logged), timeout=10)
            wait_until(functools.partial(replaced, stack.pid, marker, pid), timeout=10)
            wait_until(answers, timeout=60, interval=0.5)
        assert stack.poll() is None  # runstack itself never stopped
    finally:
        ctrl_c(stack)
