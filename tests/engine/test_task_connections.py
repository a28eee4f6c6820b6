"""A worker keeps its database connection from one task to the next, as Django keeps one from one request to
the next (conflictdesk/celery.py): a new one per task (Celery's default) cost a PostgreSQL backend and an
authentication each time. The real-server count is in tests/integration/test_two_workers.py."""
import time

import pytest
from celery import signals
from celery.fixups.django import DjangoWorkerFixup
from django.db import connection, transaction

from conflictdesk.celery import app
from sync.tasks import sweep

pytestmark = pytest.mark.django_db(transaction=True)


def _boundary(signal) -> None:
    """A task boundary as a worker signals it (any task: sweep here)."""
    signal.send(sender=sweep, task_id="t1", task=sweep, args=(), kwargs={})


def test_a_sound_connection_outlives_the_task_and_an_obsolete_one_is_replaced():
    connection.ensure_connection()
    raw = connection.connection
    DjangoWorkerFixup(app).close_database()  # Celery's own closing, as it runs at every task boundary
    _boundary(signals.task_postrun)
    _boundary(signals.task_prerun)
    assert connection.connection is raw
    connection.close_at = time.monotonic() - 1  # older than CONN_MAX_AGE
    _boundary(signals.task_postrun)
    assert connection.connection is None
    connection.ensure_connection()
    assert connection.connection is not raw


def test_a_broken_connection_is_closed_at_the_boundary_not_reused():
    connection.ensure_connection()
    connection.connection.close()  # as a PostgreSQL restart leaves it
    connection.errors_occurred = True  # what Django marks when a statement fails on it
    _boundary(signals.task_prerun)
    assert connection.connection is None


def test_an_eager_task_leaves_its_callers_transaction_open():
    with transaction.atomic():
        sweep.push_request(is_eager=True)
        try:
            _boundary(signals.task_postrun)
        finally:
            sweep.pop_request()
        assert connection.in_atomic_block and connection.connection is not None
