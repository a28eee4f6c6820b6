"""Helpers for the audit tests: events to chain, and a way round the append-only trigger."""
from datetime import datetime, timedelta, timezone

import pytest
from django.db import connection

from audit.record import record_event

T0 = datetime(2026, 3, 1, 9, 30, 0, 123456, tzinfo=timezone.utc)


def sync_event(i: int, *, partition: str = "site:site1", record_key: str = "site1/ehr-1/obs-1::/content", **extra):
    """A plausible engine event: the i-th step of a run on one record."""
    return record_event(
        action="sync.write",
        outcome="ok",
        actor="worker@test:1",
        partition=partition,
        occurred_at=T0 + timedelta(seconds=i),
        source="site:site1",
        source_object="obs-1",
        source_version=f"obs-1::site1::{i}",
        destination="central",
        destination_object="Observation/42",
        destination_version=str(i),
        patient_link_id=7,
        record_key=record_key,
        run_id=100 + i,
        source_hash="a" * 64,
        written_hash="b" * 64,
        readback_hash="b" * 64,
        detail={"step": "write", "attempt": 1},
        **extra,
    )


@pytest.fixture
def behind_the_back():
    """Run SQL on the audit table with its triggers off, as the table owner could, in the test's transaction."""

    def run(sql: str, params=()):
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
            cursor.execute(sql, params)
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")

    return run
