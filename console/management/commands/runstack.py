"""`make run`: everything in the foreground — Redis (started when none answers), migrations,
the admin user, the demo model, then web + Celery worker + beat, supervised (console/supervisor.py:
a child that dies is started again). Ctrl-C stops all of them."""

import os
import shutil
import sys
import time
from urllib.parse import urlparse

import redis
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from console.supervisor import Child, Supervisor


def stack_commands(host: str, port: str) -> dict[str, list[str]]:
    """The children's command lines. Worker and beat log at INFO; the beat's tasks' routine lines
    (a few a second) are dropped by settings.LOGGING's filter, their warnings and errors are not."""
    python = sys.executable
    return {
        "web": [python, "-m", "serving.v2.server", "--host", host, "--port", port],
        "worker": [python, "-m", "celery", "-A", "console", "worker", "-l", "INFO", "-P", "solo",
                   "-n", "paddock-worker@%h"],
        "beat": [python, "-m", "celery", "-A", "console", "beat", "-l", "INFO",
                 "-s", str(settings.VAR_DIR / "celerybeat-schedule")],
    }


class Command(BaseCommand):
    help = "Run Paddock (web, worker, beat) in the foreground, with an embedded Redis when needed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("PADDOCK_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PADDOCK_PORT", "8000")))

    def handle(self, *args: object, **options: object) -> None:
        children: list[Child] = []
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        redis_server = self._ensure_redis()
        if redis_server is not None:
            children.append(redis_server)
        supervisor = Supervisor(children, lambda line: self.stderr.write(f"[runstack] {line}"),
                                stop_seconds=settings.PADDOCK_WORKER_DRAIN_SECONDS + 5)  # the worker drains
        try:
            call_command("migrate", interactive=False, verbosity=0)
            call_command("collectstatic", interactive=False, verbosity=0)
            call_command("ensure_admin")
            call_command("register_demo_model")
            for name, command in stack_commands(str(options["host"]), str(options["port"])).items():
                child = Child(name, command)
                child.start()
                children.append(child)
            self.stdout.write(self.style.SUCCESS(
                f"Paddock is up on http://{options['host']}:{options['port']}/ (Ctrl-C stops it)"
            ))
            supervisor.run()  # restarts a child that dies; returns on Ctrl-C or SIGTERM
        finally:
            supervisor.stop()

    def _ensure_redis(self) -> Child | None:
        """None when a Redis answers at REDIS_URL; else the embedded one this started (supervised too)."""
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
        child = Child("redis", [binary, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                "--maxmemory", settings.PADDOCK_EMBEDDED_REDIS_MAXMEMORY,
                                "--maxmemory-policy", "noeviction", "--loglevel", "warning"])
        child.start()
        for _ in range(50):
            if self._redis_answers():
                return child
            time.sleep(0.1)
        if child.popen is not None:
            child.popen.terminate()
        raise CommandError("the embedded Redis did not start")

    def _redis_answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

