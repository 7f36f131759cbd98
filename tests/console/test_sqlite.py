"""The embedded SQLite default (make run) under the web, worker and beat writing at once."""

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Each thread is a process of make run's stack: a transaction that reads a row, then writes it
# (finish_validation's shape), while the others do the same.
CONTENDED_WRITES = """
import threading, time
import django
django.setup()
from django.core.management import call_command
from django.db import connection, transaction
from django.contrib.auth.models import Group

call_command("migrate", verbosity=0)
group = Group.objects.create(name="g0")
errors = []

def writer(index):
    try:
        for step in range(30):
            with transaction.atomic():
                row = Group.objects.get(pk=group.pk)
                time.sleep(0.002)
                row.name = f"g{index}-{step}"
                row.save()
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        connection.close()

threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("ERRORS", errors)
assert not errors, errors
"""


def test_transactions_that_read_then_write_wait_for_each_other(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update(DJANGO_SETTINGS_MODULE="console.settings", DEBUG="1", PADDOCK_VAR_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", CONTENDED_WRITES], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "ERRORS []" in done.stdout
    with closing(sqlite3.connect(tmp_path / "paddock.sqlite3")) as database:
        assert database.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # WAL persists in the file
