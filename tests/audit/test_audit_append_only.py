"""The database, not the application, refuses to change an audit row."""
import pytest
from django.db import DatabaseError, connection, transaction

from audit.models import AuditAnchor, AuditEvent

from conftest import T0, sync_event

pytestmark = pytest.mark.django_db


def _refused(change):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        change()


def _sql(statement, params=()):
    def run():
        with connection.cursor() as cursor:
            cursor.execute(statement, params)

    return run


def test_it_refuses_orm_updates_and_deletes():
    event = sync_event(1)
    event.outcome = "forged"
    _refused(event.save)
    _refused(event.delete)
    _refused(lambda: AuditEvent.objects.update(outcome="forged"))
    _refused(lambda: AuditEvent.objects.all().delete())
    assert AuditEvent.objects.get().outcome == "ok"


def test_it_refuses_raw_sql():
    event = sync_event(1)
    _refused(_sql("UPDATE audit_auditevent SET hash = %s WHERE id = %s", ["f" * 64, event.pk]))
    _refused(_sql("DELETE FROM audit_auditevent WHERE id = %s", [event.pk]))
    assert AuditEvent.objects.get().hash == event.hash


def test_it_refuses_changes_to_anchors():
    AuditAnchor.objects.create(partition="p", seq=1, hash="a" * 64, fhir_id="1", anchored_at=T0)
    _refused(lambda: AuditAnchor.objects.update(hash="b" * 64))
    _refused(_sql("DELETE FROM audit_auditanchor"))


def test_it_refuses_truncate_outside_test_databases():
    # Django's test database is exempt from the TRUNCATE refusal (it flushes with TRUNCATE), so
    # attach the same function without the exemption to a scratch table and truncate that.
    _sql("CREATE TEMP TABLE scratch (x int)")()
    _sql("CREATE TRIGGER t BEFORE TRUNCATE ON scratch EXECUTE FUNCTION audit_refuse_change()")()
    _refused(_sql("TRUNCATE scratch"))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_auditevent'::regclass "
            "AND tgenabled = 'O' AND NOT tgisinternal ORDER BY tgname"
        )
        assert [r[0] for r in cursor.fetchall()] == ["audit_auditevent_append_only", "audit_auditevent_moves_head",
                                                     "audit_auditevent_no_truncate"]
