"""The audit chain becomes keyed: each event's hash is an HMAC under a key kept outside the
database (console.audit.audit_keys), so that whoever can write the database cannot recompute the
chain. Existing events are checked as they were (plain SHA-256) and signed anew, in order; a
chain already broken is refused rather than blessed. And the table can no longer be emptied by
TRUNCATE on PostgreSQL (`manage.py flush`), nor rewritten on SQLite, where until now only the
ORM refused it."""

import hashlib
import hmac
import json
from datetime import UTC

from django.db import migrations, models

GENESIS = "0" * 64
FIELDS = ("actor_user_id", "actor_username", "actor_token_id", "actor_token_name", "action", "object_type",
          "object_id", "object_repr", "before", "after", "client_address", "request_id")

NO_TRUNCATE = """
CREATE OR REPLACE FUNCTION paddock_audit_no_truncate() RETURNS trigger AS $$
BEGIN
  -- The test suite empties tables between tests; it sets this on its own connections only.
  IF current_setting('paddock.allow_audit_truncate', true) = 'on' THEN
    RETURN NULL;
  END IF;
  RAISE EXCEPTION 'audit events are append-only: TRUNCATE refused';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON console_auditevent
  FOR EACH STATEMENT EXECUTE FUNCTION paddock_audit_no_truncate();
"""
SQLITE_APPEND_ONLY = [
    "CREATE TRIGGER IF NOT EXISTS audit_event_no_update BEFORE UPDATE ON console_auditevent "
    "BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_event_no_delete BEFORE DELETE ON console_auditevent "
    "BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END",
]


def digest(event, key):
    payload = {name: getattr(event, name) for name in FIELDS}
    payload.update(prev=event.prev_hash, created_at=event.created_at.astimezone(UTC).isoformat(timespec="microseconds"))
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(canonical).hexdigest() if key is None else hmac.new(key, canonical, hashlib.sha256).hexdigest()


def sign_existing_chain(apps, schema_editor):
    from console.audit import audit_keys

    key_id, key = audit_keys()[0]
    AuditEvent = apps.get_model("console", "AuditEvent")
    postgres = schema_editor.connection.vendor == "postgresql"
    if postgres:
        schema_editor.execute("ALTER TABLE console_auditevent DISABLE TRIGGER audit_event_append_only")
    previous_old, previous_new = GENESIS, GENESIS
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        if event.prev_hash != previous_old or digest(event, None) != event.hash:
            raise RuntimeError(f"audit chain broken at event {event.pk} before it was keyed: "
                               "repair or archive it before migrating")
        previous_old = event.hash
        event.prev_hash = previous_new
        new_hash = digest(event, key)
        AuditEvent.objects.filter(pk=event.pk).update(prev_hash=previous_new, hash=new_hash, key_id=key_id)
        previous_new = new_hash
    if postgres:
        schema_editor.execute("ALTER TABLE console_auditevent ENABLE TRIGGER audit_event_append_only")


def guard_table(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(NO_TRUNCATE)
    elif schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_APPEND_ONLY:
            schema_editor.execute(statement)


def unguard_table(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP TRIGGER IF EXISTS audit_event_no_truncate ON console_auditevent; "
                              "DROP FUNCTION IF EXISTS paddock_audit_no_truncate();")
    elif schema_editor.connection.vendor == "sqlite":
        schema_editor.execute("DROP TRIGGER IF EXISTS audit_event_no_update")
        schema_editor.execute("DROP TRIGGER IF EXISTS audit_event_no_delete")


class Migration(migrations.Migration):
    dependencies = [("console", "0002_audit_append_only_trigger")]
    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="key_id",
            field=models.CharField(blank=True, default="", max_length=32),
        ),
        migrations.RunPython(sign_existing_chain, migrations.RunPython.noop),
        migrations.RunPython(guard_table, unguard_table),
    ]
