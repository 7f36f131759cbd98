"""`make run` as a user runs it, for the reliability tests: `manage.py runstack` on free ports with
its embedded defaults (SQLite under its own folder, a Redis it starts itself, one worker), plus any
settings a test gives it (a user's environment: DATABASE_URL, PADDOCK_WORKER_MAX_RSS_MB, ...);
Ctrl-C at the end. Its children are found by their command lines, as an operator finds them."""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from tests.conftest import ROOT, free_port, port_open, wait_until
from tests.console.test_make_run import SUITE_ONLY, children_of, ctrl_c
from tests.reliability.load import Load

WEB, WORKER, BEAT, REDIS = "serving.v2.server", "celery -A console worker", "celery -A console beat", "redis-server"
GUARD_SECONDS = 120.0  # hang guard for starting up and recovering: never a measured threshold
ADMIN_PASSWORD = "demo-admin-pass"


@dataclass
class Stack:
    """The runstack process, its ports, environment and log, and a token of its admin."""

    popen: "subprocess.Popen[bytes]"
    port: int
    redis_port: int
    env: dict[str, str]
    log: Path
    token: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def manage(self, *args: str) -> "subprocess.CompletedProcess[str]":
        """`manage.py` with the stack's environment (its database)."""
        return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=120)

    def new_token(self, *scopes: str, name: str = "") -> str:
        """A new token of the admin user with these scopes."""
        result = self.manage("create_token", "admin", *(["--name", name] if name else []),
                             *[f"--scope={scope}" for scope in scopes])
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def child(self, marker: str) -> int:
        """The pid of runstack's one child whose command line has `marker` (waiting for it to be there)."""
        def found() -> int | None:
            pids = [pid for pid, command in children_of(self.popen.pid).items() if marker in command]
            return pids[0] if len(pids) == 1 else None
        return int(wait_until(found, timeout=30, interval=0.1))

    def redis(self) -> redis.Redis:
        """A client of the Redis runstack started."""
        return redis.Redis(port=self.redis_port, socket_timeout=5)

    def serving(self, model: str = "demo-mlp", token: str = "") -> None:
        """Wait until every child is up and `model` answers 200 steadily (4 clients)."""
        for marker in (WEB, WORKER, BEAT, REDIS):
            self.child(marker)
        load = Load(self.port, token or self.token, model, clients=4)
        load.start()
        try:
            steady = load.wait_steady(0.0, timeout=GUARD_SECONDS)
        finally:
            load.stop()
        assert steady, self.log.read_text()[-3000:]

    def api(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json") -> Any:
        """A management API call with the stack's token; its JSON answer (an HTTP error raises)."""
        request = urllib.request.Request(f"{self.url}{path}", data=body, method=method,
                                         headers={"Authorization": f"Bearer {self.token}",
                                                  "Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def upload(self, model: str, data: bytes) -> int:
        """Register `data` as a new version of `model` (made if missing) and wait until it is ready; its number."""
        try:
            self.api("GET", f"/api/v1/models/{model}/")
        except urllib.error.HTTPError as missing:
            assert missing.code == 404, missing
            self.api("POST", "/api/v1/models/", json.dumps({"name": model, "team": "demo"}).encode())
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"artifact\"; filename=\"m.onnx\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        number = int(self.api("POST", f"/api/v1/models/{model}/versions/", body,
                              f"multipart/form-data; boundary={boundary}")["number"])
        wait_until(lambda: self.api("GET", f"/api/v1/models/{model}/versions/{number}/")["status"] == "ready",
                   timeout=GUARD_SECONDS, interval=0.5)
        return number


@contextmanager
def runstack(folder: Path, *scopes: str, **settings: str) -> Iterator[Stack]:
    """`make run` with the user's `settings` on top of its defaults, and a token of its admin
    with `scopes` (predict only without); Ctrl-C at the end, and runstack must have lived till then."""
    port, redis_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if key not in SUITE_ONLY}
    env.update(DEBUG="1", PADDOCK_VAR_DIR=str(folder), PADDOCK_PORT=str(port),
               REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", PADDOCK_ADMIN_PASSWORD=ADMIN_PASSWORD,
               PYTHONUNBUFFERED="1", **settings)
    log = folder / "run.log"
    popen = subprocess.Popen([sys.executable, "manage.py", "runstack"], cwd=ROOT, env=env, stdout=log.open("wb"),
                             stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: port_open(port) or popen.poll() is not None, timeout=GUARD_SECONDS)
        assert popen.poll() is None, log.read_text()[-3000:]
        stack = Stack(popen, port, redis_port, env, log)
        stack.token = stack.new_token(*(scopes or ("predict",)))
        yield stack
        assert popen.poll() is None, "runstack itself stopped"
    finally:
        ctrl_c(popen)
