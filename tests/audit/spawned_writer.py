"""A writer process for the audit concurrency test, started with 'spawn' (a fresh interpreter).

Forking the test process copies whatever locks its other threads hold at that instant (the lease heartbeat,
HTTP pools, a live server's threads from earlier tests): a child could wait on one forever. A spawned child
owns nothing it did not take itself; it sets Django up on the parent's test database and writes.
"""
import os


def write(db_name: str, partition: str, writer: int, count: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conflictdesk.settings")
    import django  # here, not at the top: this module is imported by the child before Django is set up

    django.setup()
    from django.conf import settings  # after setup, as every Django import below

    settings.DATABASES["default"]["NAME"] = db_name  # the parent's test database, not the configured one
    from audit.record import record_event
    from django.db import connection, transaction

    try:
        for i in range(count):
            with transaction.atomic():
                record_event(action="sync.step", outcome="ok", actor=f"w{writer}", partition=partition,
                             run_id=writer, detail={"i": i})
    finally:
        connection.close()
