"""Finding 6: the application's database role can add audit rows and read them, nothing else.

Production runs two roles (README, "Database roles"): the migration owner
and the application role the web, worker and beat processes connect as.
This test connects to the test database as the application role
(``conflictdesk_app``, created by deploy/postgres.sh with the development
password) and tries every way to rewrite the trail: all refused by
PostgreSQL itself. Appending through the chain still works, and only in
order: the head moves by itself, from the rows, never by the application.
"""
import os

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from audit.chain import event_hash
from audit.models import AuditEvent

from conftest import sync_event

pytestmark = pytest.mark.django_db(transaction=True)

APP_ROLE = settings.CONFLICTDESK_DB_APP_ROLE
APP_PASSWORD = os.environ.get("CONFLICTDESK_DB_APP_PASSWORD", "conflictdesk_app")


@pytest.fixture
def as_app():
    db = settings.DATABASES["default"]
    try:
        conn = psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, dbname=connection.settings_dict["NAME"],
                               user=APP_ROLE, password=APP_PASSWORD, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(f"cannot connect as {APP_ROLE} ({type(exc).__name__}); run deploy/postgres.sh start")
    with conn:
        yield conn


def _refused(conn, sql, params=()):
    with pytest.raises(psycopg.Error):
        conn.execute(sql, params)


def _row_after(event, **changes):
    values = {f.column: getattr(event, f.attname) for f in AuditEvent._meta.concrete_fields if f.column != "id"}
    values.update({"partition_seq": event.partition_seq + 1, "prev_hash": event.hash, "action": "forged", **changes})
    values["hash"] = event_hash(values)
    return values


def _insert(conn, values):
    from psycopg.types.json import Jsonb

    cols = list(values)
    conn.execute(f"INSERT INTO audit_auditevent ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                 [Jsonb(values[c]) if c == "detail" else values[c] for c in cols])


def test_the_app_role_cannot_change_or_remove_audit_rows(as_app):
    event = sync_event(1)
    assert as_app.execute("SELECT count(*) FROM audit_auditevent").fetchone()[0] == 1
    _refused(as_app, "UPDATE audit_auditevent SET outcome = 'forged'")
    _refused(as_app, "DELETE FROM audit_auditevent")
    _refused(as_app, "TRUNCATE audit_auditevent")
    _refused(as_app, "UPDATE audit_auditanchor SET hash = 'x'")
    _refused(as_app, "DELETE FROM audit_auditanchor")
    _refused(as_app, "TRUNCATE audit_auditanchor")
    assert AuditEvent.objects.get().hash == event.hash


def test_the_app_role_cannot_switch_off_or_drop_the_guards(as_app):
    sync_event(1)
    for table in ("audit_auditevent", "audit_auditanchor"):
        _refused(as_app, f"ALTER TABLE {table} DISABLE TRIGGER USER")
        _refused(as_app, f"ALTER TABLE {table} DISABLE TRIGGER ALL")
        _refused(as_app, f"DROP TRIGGER {table}_append_only ON {table}")
        _refused(as_app, f"DROP TABLE {table} CASCADE")
    _refused(as_app, "DROP FUNCTION audit_refuse_change() CASCADE")
    _refused(as_app, "CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql "
                     "AS $$ BEGIN RETURN NEW; END $$")


def test_the_app_role_cannot_rewind_or_forge_the_head(as_app):
    sync_event(1)
    last = sync_event(2)
    _refused(as_app, "UPDATE audit_audithead SET seq = 1")
    _refused(as_app, "DELETE FROM audit_audithead")
    _refused(as_app, "TRUNCATE audit_audithead")
    _refused(as_app, "INSERT INTO audit_audithead (partition, seq, hash) VALUES ('forged', 9, %s)", ["f" * 64])
    assert as_app.execute("SELECT seq, hash FROM audit_audithead WHERE partition = 'site:site1'").fetchone() == \
        (2, last.hash)


def test_the_app_role_appends_only_in_order(as_app):
    first = sync_event(1)
    last = sync_event(2)
    with pytest.raises(psycopg.Error):  # a fork: a second row after the first
        _insert(as_app, _row_after(first))
    with pytest.raises(psycopg.Error):  # a gap
        _insert(as_app, _row_after(last, partition_seq=last.partition_seq + 5))
    with pytest.raises(psycopg.Error):  # a link to something that is not the head
        _insert(as_app, _row_after(last, prev_hash="e" * 64))
    with as_app.transaction():
        assert as_app.execute("SELECT * FROM audit_lock_head('site:site1')").fetchone() == (2, last.hash)
        _insert(as_app, _row_after(last))
    head = as_app.execute("SELECT seq FROM audit_audithead WHERE partition = 'site:site1'").fetchone()
    assert head == (3,) and AuditEvent.objects.count() == 3
