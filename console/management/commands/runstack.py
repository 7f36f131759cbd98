"""`make run`: everything in the foreground — Redis (started when none answers), migrations,
the admin user, the demo model, then web + Celery worker + beat. Ctrl-C stops all of them."""

import os
import shutil
import signal
import subprocess
import sys
import time
from urllib.parse import urlparse

import redis
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Run Paddock (web, worker, beat) in the foreground, with an embedded Redis when needed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("PADDOCK_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PADDOCK_PORT", "8000")))

    def handle(self, *args: object, **options: object) -> None:
        children: list[subprocess.Popen[bytes]] = []
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        redis_server = self._ensure_redis()
        if redis_server is not None:
            children.append(redis_server)
        try:
            call_command("migrate", interactive=False, verbosity=0)
            call_command("collectstatic", interactive=False, verbosity=0)
            call_command("ensure_admin")
            call_command("register_demo_model")
            python = sys.executable
            commands = {
                "web": [python, "-m", "serving.v2.server", "--host", str(options["host"]),
                        "--port", str(options["port"])],
                "worker": [python, "-m", "celery", "-A", "console", "worker", "-l", "INFO",
                           "-P", "solo", "-n", "paddock-worker@%h"],
                "beat": [python, "-m", "celery", "-A", "console", "beat", "-l", "INFO",
                         "-s", str(settings.VAR_DIR / "celerybeat-schedule")],
            }
            for command in commands.values():
                children.append(subprocess.Popen(command, start_new_session=True))
            self.stdout.write(self.style.SUCCESS(
                f"Paddock is up on http://{options['host']}:{options['port']}/ (Ctrl-C stops it)"
            ))
            self._wait(children)
        finally:
            self._stop(children)

    def _ensure_redis(self) -> "subprocess.Popen[bytes] | None":
        url = urlparse(settings.REDIS_URL)
        if self._redis_answers():
            return None
        if url.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise CommandError(f"no Redis answers at {settings.REDIS_URL} and it is not local, so none was started")
        binary = shutil.which("redis-server")
        if binary is None:
            raise CommandError(
                f"no Redis answers at {settings.REDIS_URL} and redis-server is not installed: "
                "install it (apt-get install redis-server, brew install redis) or set REDIS_URL"
            )
        port = str(url.port or 6379)
        self.stdout.write(f"starting an embedded Redis on port {port}")
        process = subprocess.Popen(
            [binary, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--maxmemory", settings.PADDOCK_EMBEDDED_REDIS_MAXMEMORY, "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL, start_new_session=True,
        )
        for _ in range(50):
            if self._redis_answers():
                return process
            time.sleep(0.1)
        process.terminate()
        raise CommandError("the embedded Redis did not start")

    def _redis_answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def _wait(self, children: "list[subprocess.Popen[bytes]]") -> None:
        stop = {"now": False}

        def request_stop(signum: int, frame: object) -> None:
            stop["now"] = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        while not stop["now"]:
            for child in children:
                if child.poll() is not None:
                    command = child.args if isinstance(child.args, list) else [child.args]
                    self.stderr.write(f"{' '.join(map(str, command))[:80]} exited with {child.returncode}")
                    return
            time.sleep(0.5)

    def _stop(self, children: "list[subprocess.Popen[bytes]]") -> None:
        # The Redis server goes last: the others may still flush to it while stopping.
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for child in reversed(children):
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
