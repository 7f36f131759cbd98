"""The processes the bench starts: Paddock's own, the naive server and the peers, and their CPU."""

import argparse
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import ROOT, peers

TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], what: str, timeout: float = 120) -> None:
    """Polls `check` until it is true (connection errors count as not yet); RuntimeError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready within {timeout}s")


def post_succeeds(url: str, body: bytes, timeout: float = 10, token: str = "") -> bool:
    """POSTs a JSON body: True on 200 (an HTTP error or no answer raises OSError)."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status == 200


# -- processes and their CPU ------------------------------------------------------------------

def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds these processes have used so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError, ValueError):
            continue
    return total / TICKS


def thread_cpu_seconds(pids: list[int]) -> dict[str, float]:
    """User + system CPU seconds of these processes' threads so far, keyed "name/tid" (the
    worker's onnxruntime threads, its batcher lanes, its heartbeat, ...)."""
    found: dict[str, float] = {}
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                name = (task / "comm").read_text().strip()
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            key = f"{name}/{task.name}"
            found[key] = found.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS
    return found


def descendants(pid: int) -> list[int]:
    """Children, grandchildren and so on (PyTriton: python → tritonserver → backend stub)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        for child in parents.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


class Stack:
    """Processes the bench starts and stops, grouped by role for CPU accounting."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: dict[str, list[subprocess.Popen[bytes]]] = {}

    def start(self, role: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Starts one process of `role` in a session of its own, its output to <workdir>/<role>.log."""
        log_file = (self.workdir / f"{role}.log").open("ab")
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.processes.setdefault(role, []).append(process)
        return process

    def pids(self, role: str) -> list[int]:
        """The role's live processes and all their descendants."""
        pids = []
        for process in self.processes.get(role, []):
            if process.poll() is None:
                pids.append(process.pid)
                pids.extend(descendants(process.pid))
        return pids

    def stop(self, role: str) -> None:
        for process in self.processes.pop(role, []):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for role in list(self.processes):
            self.stop(role)


# -- Paddock through its own API --------------------------------------------------------------

class Paddock:
    """Paddock as `make run` starts it (its own Redis, a Celery worker, the web processes), driven
    through its API."""

    def __init__(self, stack: Stack, args: argparse.Namespace) -> None:
        self.stack = stack
        self.redis_port, self.port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ, "DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(40), "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "0", "SESSION_COOKIE_SECURE": "0", "CSRF_COOKIE_SECURE": "0",
            "SECURE_HSTS_SECONDS": "0", "PADDOCK_VAR_DIR": str(stack.workdir / "var"),
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0", "PADDOCK_CELERY_QUEUE": "bench",
            # Paddock's own keys under make run's prefix: a prefix equal to the team's name
            # ("bench") would refuse every stream key (bench/offline.py binds "bench:…" streams).
            "PADDOCK_REDIS_PREFIX": "paddock", "PADDOCK_INTRA_OP_THREADS": str(args.intra_op_threads),
            "PADDOCK_ADMIN_PASSWORD": secrets.token_urlsafe(16), "PADDOCK_MAX_UPLOAD_BYTES": str(1 << 30),
            "PADDOCK_MAX_JOB_INPUT_BYTES": str(1 << 30),  # the long job beside online cells (bench/offline.py)
            "DJANGO_SETTINGS_MODULE": "console.settings", "LOG_LEVEL": "WARNING",
        }
        self.env.pop("DATABASE_URL", None)
        self.redis_socket = stack.workdir / "redis.sock" if args.redis_socket else None
        if self.redis_socket:  # the data plane over a Unix socket; Celery stays on TCP
            self.env["CELERY_BROKER_URL"] = self.env["CELERY_RESULT_BACKEND"] = self.env["REDIS_URL"]
            self.env["REDIS_URL"] = f"unix://{self.redis_socket}?db=0"
        self.args = args
        self.token = ""

    def manage(self, *command: str) -> str:
        """Runs manage.py with Paddock's environment; its stdout."""
        done = subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=self.env,
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(command)} failed:\n{done.stderr[-2000:]}")
        return done.stdout.strip()

    def start(self) -> None:
        """Redis, the database, an admin token, the worker and the web processes, until it is ready."""
        (self.stack.workdir / "var").mkdir(parents=True, exist_ok=True)
        socket_options = (["--unixsocket", str(self.redis_socket), "--unixsocketperm", "700"]
                          if self.redis_socket else [])
        self.stack.start("redis", ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", *socket_options], self.env)
        self.manage("migrate", "--noinput")
        self.manage("ensure_admin")
        self.manage("shell", "-c", "from console.audit import Actor; from console.services import ensure_team; "
                    "ensure_team(actor=Actor.system('bench'), name='bench')")
        self.token = self.manage("create_token", "admin", "--scope", "admin", "--name", "bench")
        # BENCH_PROFILE_WORKER=<folder>: the same worker under cProfile (bench/profiled_worker.py)
        celery = ["bench.profiled_worker"] if os.environ.get("BENCH_PROFILE_WORKER") else ["celery"]
        self.stack.start("worker", [sys.executable, "-m", *celery, "-A", "console", "worker", "-P", "solo",
                                    "-l", "WARNING", "-n", "bench@%h"], self.env)
        self.stack.start("web", [sys.executable, "-m", "serving.v2.server", "--host", "127.0.0.1",
                                 "--port", str(self.port), "--workers", str(self.args.web_processes),
                                 "--log-level", "warning"], self.env)
        wait_for(lambda: self.get("/v2/health/ready")[0] == 200, "Paddock web")

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str = "application/json") -> tuple[int, bytes]:
        """(status, body) of one request with the admin token; HTTP errors are answers too."""
        request = urllib.request.Request(self.base + path, data=body, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def get(self, path: str) -> tuple[int, bytes]:
        return self.request("GET", path)

    def upload(self, name: str, data: bytes, filename: str) -> None:
        """A new version of model `name` from these bytes, posted as a multipart form."""
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"artifact\"; filename=\"{filename}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        status, payload = self.request("POST", f"/api/v1/models/{name}/versions/", body,
                                       f"multipart/form-data; boundary={boundary}")
        if status not in (200, 201):
            raise RuntimeError(f"upload of {name} failed: {status} {payload[:300]!r}")

    def configure(self, name: str, settings: dict[str, Any]) -> None:
        """PATCHes the model's deployment with these settings."""
        status, payload = self.request("PATCH", f"/api/v1/deployments/{name}/", json.dumps(settings).encode())
        if status != 200:
            raise RuntimeError(f"deployment of {name} failed: {status} {payload[:300]!r}")

    def register(self, name: str, artifact: Path, max_batch_size: int, instances: int = 1) -> None:
        """As a user would: create the model, upload the version, configure the deployment."""
        self.request("POST", "/api/v1/models/", json.dumps({"name": name, "team": "bench"}).encode())
        self.upload(name, artifact.read_bytes(), artifact.name)
        self.configure(name, {"max_batch_size": max_batch_size, "instances": instances, "max_queue_depth": 100_000,
                              "default_timeout_ms": 120_000})
        try:
            wait_for(lambda: self.get(f"/v2/models/{name}/ready")[0] == 200, f"{name} served", timeout=300)
        except RuntimeError as error:
            raise RuntimeError(f"{error}; its versions: {self.get(f'/api/v1/models/{name}/versions/')[1][:2000]!r}; "
                               f"workers: {self.get('/api/v1/workers/')[1][:2000]!r}") from None

    def register_shadowed(self, name: str, artifact: Path, max_batch_size: int) -> None:
        """The same model, v1 live and v2 (the same graph, other bytes) its 100% shadow."""
        import onnx

        self.register(name, artifact, max_batch_size)
        twin = onnx.load_from_string(artifact.read_bytes())
        twin.producer_version = f"{twin.producer_version}-shadow"
        self.upload(name, twin.SerializeToString(), artifact.name)
        wait_for(lambda: self.get(f"/api/v1/models/{name}/versions/2/")[0] == 200 and
                 json.loads(self.get(f"/api/v1/models/{name}/versions/2/")[1])["status"] == "ready",
                 f"{name} v2 validated", timeout=300)
        self.configure(name, {"active_version": 1, "shadow_version": 2, "shadow_percent": 100})
        wait_for(lambda: self.get(f"/v2/models/{name}/versions/2/ready")[0] == 200, f"{name} shadow held",
                 timeout=300)

    def batch_counters(self, name: str) -> tuple[float, float]:
        """(batches, rows) the workers have executed for this model so far, from /metrics."""
        _, text = self.get("/metrics")
        return peers.batch_counters(text.decode(), name, "paddock_inference_batches_total",
                                    "paddock_inference_batch_rows_total")


# -- the naive server and the peers -----------------------------------------------------------

def start_naive(stack: Stack, artifact: Path, model: str, intra_op_threads: int, body: bytes) -> str:
    """Starts bench/naive_server.py serving one model and waits for it to answer `body`; its infer URL."""
    port = free_port()
    stack.start("naive", [sys.executable, "-m", "uvicorn", "bench.naive_server:app", "--host", "127.0.0.1",
                          "--port", str(port), "--no-access-log", "--log-level", "warning"],
                {**os.environ, "BENCH_MODEL": str(artifact), "BENCH_MODEL_NAME": model,
                 "BENCH_INTRA_OP_THREADS": str(intra_op_threads)})
    url = f"http://127.0.0.1:{port}/v2/models/{model}/infer"
    wait_for(lambda: post_succeeds(url, body), "naive server")
    return url


def start_peer(stack: Stack, peer: str, installed: dict[str, Any], *, workdir: Path, artifact: Path, model: str,
               args: argparse.Namespace, body: bytes, instances: int) -> peers.Launch:
    """Starts the peer serving one model (with as many instances as Paddock's deployment, where
    the peer has them) and waits for it to answer the bench's body."""
    launch = peers.launch(peer, installed, workdir=workdir, artifact=artifact, model=model,
                          intra_op_threads=args.intra_op_threads, ports=(free_port(), free_port(), free_port()),
                          instances=instances)
    process = stack.start(peer, launch.command, launch.env)

    def answers() -> bool:
        if process.poll() is not None:
            lines = (workdir / f"{peer}.log").read_text(errors="replace").strip().splitlines()
            errors = [line.strip() for line in lines if re.search(r"error|exception", line, re.I)]
            raise peers.PeerUnavailable(f"exited with status {process.returncode}: "
                                        + " / ".join(errors[-2:] or lines[-8:])[-1500:])
        return post_succeeds(launch.url, body)

    try:
        wait_for(answers, peer, timeout=180)
    except (RuntimeError, OSError):
        stack.stop(peer)
        raise
    return launch


def server_version(launch: peers.Launch) -> str:
    """'<name> <version>' from the peer's GET /v2, or 'unknown (<why>)'."""
    try:
        with urllib.request.urlopen(f"{launch.server_url}/v2", timeout=10) as response:
            metadata = json.loads(response.read())
        return f"{metadata.get('name')} {metadata.get('version')}"
    except (OSError, ValueError) as error:
        return f"unknown ({error})"
