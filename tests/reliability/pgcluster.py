"""A PostgreSQL cluster of a test's own (initdb, pg_ctl on a free port), to stop and start under
load: never the machine's. The suite runs as root and PostgreSQL refuses to, so its commands run
as the `postgres` user, in a folder that user owns."""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg


def _binaries() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian's layout)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    return Path(found[-1]).parent


class Cluster:
    """One cluster: `start()`, `stop()` (fast shutdown, as an operator or a crash would), `remove()`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bin = _binaries()
        self.owner = pwd.getpwnam("postgres")
        self.folder = Path(tempfile.mkdtemp(prefix="paddock-pg-"))  # in /tmp: the postgres user can reach it
        os.chown(self.folder, self.owner.pw_uid, self.owner.pw_gid)
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def url(self, database: str = "paddock") -> str:
        """The DATABASE_URL of a database in this cluster."""
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str) -> str:
        command = ["runuser", "-u", "postgres", "--", str(self.bin / tool), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stdout}{result.stderr}\n{log[-2000:]}")
        return result.stdout

    def start(self) -> None:
        """Start the server and wait until it accepts connections (pg_ctl -w)."""
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        """Fast shutdown: open connections are ended, new ones refused; returns once it is down."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self, name: str = "paddock") -> None:
        """An empty database for the stack to migrate."""
        with psycopg.connect(self.url("postgres").replace("postgres://", "postgresql://"), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')

    def query(self, sql: str, *params: object, database: str = "paddock") -> list[tuple[object, ...]]:
        """Rows of one query, on a connection of its own."""
        with psycopg.connect(self.url(database).replace("postgres://", "postgresql://")) as db:
            return db.execute(sql, params).fetchall()

    def remove(self) -> None:
        """Stop it if it runs (immediately), and delete its folder."""
        if (self.data / "postmaster.pid").exists():
            subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.data),
                            "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)
