"""Make the audit tables append-only in the database itself.

A trigger refuses UPDATE and DELETE on every row, and TRUNCATE of the table,
whatever code or client asks. The head table stays writable: it is the
sequencer, and `audit_verify` checks it against the rows.

One exception, TRUNCATE in a database named ``test_*``: Django's test runner
empties every table with a single TRUNCATE after each transactional test, and
refusing it would break every such test in the project. UPDATE and DELETE are
refused there too. The pattern is the trigger's argument, so a test can attach
the same function without it and watch TRUNCATE being refused.

The table owner can still ``ALTER TABLE ... DISABLE TRIGGER``; that is what the
hash chain and the anchors on the central server are for. In production the
application role should not own these tables.
"""

from django.db import migrations

TABLES = ("audit_auditevent", "audit_auditanchor")

FUNCTION = r"""
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND TG_NARGS > 0 AND current_database() LIKE TG_ARGV[0] THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
"""


def _triggers(table: str) -> str:
    return f"""
CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change('test\\_%');
"""


def _drop(table: str) -> str:
    return f"DROP TRIGGER {table}_append_only ON {table}; DROP TRIGGER {table}_no_truncate ON {table};"


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        migrations.RunSQL(FUNCTION, "DROP FUNCTION audit_refuse_change();"),
        *(migrations.RunSQL(_triggers(t), _drop(t)) for t in TABLES),
    ]
