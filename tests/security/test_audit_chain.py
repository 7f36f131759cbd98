"""The audit chain against someone who can write the database but does not hold the audit key:
a recomputed chain, a cut tail, TRUNCATE and `manage.py flush`, and keys rotated by setting.
Each tampering goes around the append-only triggers as an attacker with DDL rights would."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.test import override_settings

from console.audit import Actor, record_event
from console.models import AuditEvent
from tests.conftest import ROOT, child_env

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def anchors(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "anchors.jsonl"
    with override_settings(PADDOCK_AUDIT_ANCHOR_FILE=str(path)):
        yield path


def write_events(count: int, label: str = "tests") -> list[AuditEvent]:
    events = []
    for number in range(count):
        with transaction.atomic():
            events.append(record_event(actor=Actor.system(label), action="test.event", object_type="test",
                                       object_id=str(number), after={"n": number}))
    return events


def verify() -> str:
    out = StringIO()
    try:
        call_command("verify_audit", stdout=out)
    except CommandError as error:
        return str(error)
    return out.getvalue().strip()


def tamper(*statements: tuple[str, list[Any]]) -> None:
    """Run statements with the table's triggers off (replication role: a superuser's way around them)."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        try:
            for sql, params in statements:
                cursor.execute(sql, params)
        finally:
            cursor.execute("SET session_replication_role = DEFAULT")


def test_a_chain_recomputed_without_the_key_is_found(anchors: Path) -> None:
    events = write_events(3)
    assert verify() == "audit chain intact: 3 events, 0 anchor(s) hold"
    target = events[1]
    # The attacker edits an event and recomputes every hash from there the only way they can: unkeyed.
    target.after = {"n": "forged"}
    forged: list[tuple[str, list[Any]]] = []
    previous = events[0].hash
    for event in events[1:]:
        event.prev_hash = previous
        event.hash = event.compute_hash()
        forged.append(("UPDATE console_auditevent SET after = %s, prev_hash = %s, hash = %s, key_id = '' WHERE id = %s",
                       [json.dumps(event.after), event.prev_hash, event.hash, event.pk]))
        previous = event.hash
    tamper(*forged)
    assert verify() == (f"audit chain broken at event {target.pk}: its hash is not keyed "
                        "(written or rewritten without the audit key)")


def test_a_chain_recomputed_under_a_guessed_key_is_found(anchors: Path) -> None:
    events = write_events(2)
    target = events[1]
    target.after = {"n": "forged"}
    target.hash = target.compute_hash(b"not-the-key-but-long-enough")
    tamper(("UPDATE console_auditevent SET after = %s, hash = %s WHERE id = %s",
            [json.dumps(target.after), target.hash, target.pk]))
    assert verify() == (f"audit chain broken at event {target.pk}: its contents do not match its hash "
                        "(edited after it was written)")


def test_a_cut_tail_is_found_by_the_anchor(anchors: Path) -> None:
    events = write_events(4)
    out = StringIO()
    call_command("verify_audit", "--anchor", stdout=out)
    assert out.getvalue().splitlines()[-1] == f"anchored event {events[-1].pk} ({events[-1].hash})"
    assert json.loads(anchors.read_text())["id"] == events[-1].pk
    tamper(("DELETE FROM console_auditevent WHERE id >= %s", [events[2].pk]))  # the last two events
    assert AuditEvent.objects.count() == 2
    assert verify() == (f"audit chain broken at event {events[-1].pk}: the chain ends at event {events[1].pk} but "
                        f"the anchor of {json.loads(anchors.read_text())['at']} names event {events[-1].pk}: "
                        "events were removed from its tail")


def test_truncate_is_refused_by_the_database() -> None:
    write_events(2)
    settings_dict = connection.settings_dict
    # A connection of its own, without the suite's permission to empty the table.
    with psycopg.connect(host=settings_dict["HOST"] or "127.0.0.1", port=settings_dict["PORT"] or 5432,
                         user=settings_dict["USER"] or "postgres", dbname=settings_dict["NAME"],
                         autocommit=True) as raw:
        with pytest.raises(psycopg.errors.RaiseException) as refused:
            raw.execute("TRUNCATE console_auditevent CASCADE")
    assert str(refused.value).splitlines()[0] == "audit events are append-only: TRUNCATE refused"
    assert AuditEvent.objects.count() == 2


def test_manage_py_flush_leaves_the_audit_log_whole(cast: dict[str, Any]) -> None:
    write_events(2)
    users = User.objects.count()
    # As an operator would run it: the production settings module, the same database.
    env = child_env(DJANGO_SETTINGS_MODULE="console.settings", SECRET_KEY="flush-test-secret-key-0123456789")
    done = subprocess.run([sys.executable, "manage.py", "flush", "--noinput"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stderr.startswith(f"CommandError: Database {connection.settings_dict['NAME']} couldn't be flushed.")
    # One TRUNCATE of every table: the refusal leaves the whole database as it was, not only the log.
    assert AuditEvent.objects.count() == 2 and User.objects.count() == users


def test_keys_rotate_by_setting(anchors: Path) -> None:
    old, new = "k1:first-secret-0123456789", "k2:second-secret-0123456789"
    with override_settings(PADDOCK_AUDIT_KEYS=[old]):
        first = write_events(2)
    with override_settings(PADDOCK_AUDIT_KEYS=[new, old]):
        second = write_events(1)
        assert verify() == "audit chain intact: 3 events, 0 anchor(s) hold"
    assert [e.key_id for e in first] == ["k1", "k1"] and second[0].key_id == "k2"
    with override_settings(PADDOCK_AUDIT_KEYS=[new]):  # the old key dropped too early
        assert verify() == (f"audit chain broken at event {first[0].pk}: it is signed with key 'k1', "
                            "which PADDOCK_AUDIT_KEYS does not list")


def test_the_daily_anchor_task_writes_the_head(anchors: Path) -> None:
    from console.tasks import anchor_audit_head

    events = write_events(1)
    anchor = anchor_audit_head()
    assert anchor is not None and (anchor["id"], anchor["hash"]) == (events[0].pk, events[0].hash)
    assert [json.loads(line)["id"] for line in anchors.read_text().splitlines()] == [events[0].pk]


def test_the_production_settings_refuse_a_short_audit_key() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "console.settings", "SECRET_KEY": "x" * 50,
           "PADDOCK_AUDIT_KEYS": "k1:short"}
    done = subprocess.run([sys.executable, "-c", "import django; django.setup(); "
                           "from console.audit import audit_keys; audit_keys()"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert ("PADDOCK_AUDIT_KEYS takes 'id:secret' items: an id of at most 32 characters and a secret of at "
            "least 16") in done.stderr


def migrate_console_to(target: str) -> Any:
    """Console's schema at `target`; going back also unapplies other apps' migrations that depend
    on console's later ones (webhooks'), so going forward again applies every app's."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("console", target)])
    executor.loader.build_graph()
    apps = executor.loader.project_state([("console", target)]).apps
    if target == "0003_audit_chain_keyed":
        executor.migrate(executor.loader.graph.leaf_nodes())
    return apps


def write_unkeyed(apps: Any, count: int) -> list[int]:
    """Events as Paddock wrote them before migration 0003: plain SHA-256, no key."""
    from datetime import UTC, datetime

    historical = apps.get_model("console", "AuditEvent")
    previous, ids = "0" * 64, []
    for number in range(count):
        event = AuditEvent(created_at=datetime(2026, 12, 1, 12, number, tzinfo=UTC), actor_username="old",
                           action="test.old", object_type="test", object_id=str(number), after={"n": number},
                           prev_hash=previous)
        event.hash = event.compute_hash()
        row = historical.objects.create(**{f.attname: getattr(event, f.attname) for f in historical._meta.fields
                                           if f.attname != "id"})
        previous = event.hash
        ids.append(row.pk)
    return ids


def test_an_existing_unkeyed_chain_is_checked_and_signed_when_migrating(anchors: Path) -> None:
    apps = migrate_console_to("0002_audit_append_only_trigger")
    try:
        write_unkeyed(apps, 3)
    finally:
        migrate_console_to("0003_audit_chain_keyed")
    assert set(AuditEvent.objects.values_list("key_id", flat=True)) == {"secret-key"}
    assert verify() == "audit chain intact: 3 events, 0 anchor(s) hold"


def test_a_chain_broken_before_the_upgrade_is_not_signed() -> None:
    apps = migrate_console_to("0002_audit_append_only_trigger")
    try:
        ids = write_unkeyed(apps, 3)
        tamper(("UPDATE console_auditevent SET actor_username = 'someone-else' WHERE id = %s", [ids[1]]))
        with pytest.raises(RuntimeError) as refused:
            migrate_console_to("0003_audit_chain_keyed")
        assert str(refused.value) == (f"audit chain broken at event {ids[1]} before it was keyed: "
                                      "repair or archive it before migrating")
    finally:
        tamper(("DELETE FROM console_auditevent", []))
        migrate_console_to("0003_audit_chain_keyed")


SQLITE_EVENT = """
import django
django.setup()
from django.core.management import call_command
from django.db import transaction
from console.audit import Actor, record_event
call_command("migrate", verbosity=0)
with transaction.atomic():
    record_event(actor=Actor.system("tests"), action="test.event", object_type="test", object_id="1")
"""


def test_the_embedded_sqlite_refuses_edits_of_the_audit_log(tmp_path: Path) -> None:
    """make run's SQLite: the same append-only rule in the database, not only in the ORM."""
    import sqlite3
    from contextlib import closing

    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update(DJANGO_SETTINGS_MODULE="console.settings", DEBUG="1", PADDOCK_VAR_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", SQLITE_EVENT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    with closing(sqlite3.connect(tmp_path / "paddock.sqlite3")) as database:
        for statement in ("UPDATE console_auditevent SET actor_username = 'x'", "DELETE FROM console_auditevent"):
            with pytest.raises(sqlite3.IntegrityError) as refused:
                database.execute(statement)
            assert str(refused.value) == "audit events are append-only"
        assert database.execute("SELECT count(*) FROM console_auditevent").fetchone() == (1,)
