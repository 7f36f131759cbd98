"""On PostgreSQL, refuse UPDATE and DELETE of audit events in the database itself, so that
even raw SQL through the application's connection cannot rewrite history."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION paddock_audit_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'audit events are append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON console_auditevent
  FOR EACH ROW EXECUTE FUNCTION paddock_audit_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS audit_event_append_only ON console_auditevent;
DROP FUNCTION IF EXISTS paddock_audit_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("console", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
