"""Appending to the audit chain, inside the caller's transaction.

Each partition ("site:<name>", "central", "desk") is its own chain with one
row in ``AuditHead``. An append locks that row (``SELECT ... FOR UPDATE``),
hashes the event onto the head, inserts it and moves the head, all in the
caller's transaction: the event commits or rolls back with the state change
it describes, and two workers only wait for each other when they append to
the same partition.

The head lock is held until the caller commits, so record the event as the
last step of a transaction. A transaction that appends to several partitions
must take them in a fixed order (sorted by name) or risk a deadlock.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from typing import Any

from django.db import connections, router, transaction

from .chain import GENESIS, check_detail, event_hash
from .models import AuditEvent

_HOST = socket.gethostname()

_LOCK_HEAD = "SELECT seq, hash FROM audit_audithead WHERE partition = %s FOR UPDATE"
_NEW_HEAD = "INSERT INTO audit_audithead (partition, seq, hash) VALUES (%s, 0, %s) ON CONFLICT DO NOTHING"

_COLUMNS = ("partition_seq",) + tuple(
    f.column for f in AuditEvent._meta.concrete_fields if f.column not in ("id", "partition_seq")
)
# One round trip: move the head and insert the row in the same statement.
_APPEND = (
    "WITH moved AS (UPDATE audit_audithead SET seq = %s, hash = %s WHERE partition = %s) "
    f"INSERT INTO audit_auditevent ({', '.join(_COLUMNS)}) VALUES ({', '.join(['%s'] * len(_COLUMNS))}) "
    "RETURNING id"
)
_FIELDS = frozenset(_COLUMNS) - {"partition", "partition_seq", "prev_hash", "hash"}


def system_actor() -> str:
    """The actor for work done by the engine: ``worker@<host>:<pid>``.

    The pid is read on every call because Celery forks its workers after
    this module is imported.
    """
    return f"worker@{_HOST}:{os.getpid()}"


def record_event(
    *,
    action: str,
    outcome: str,
    actor: str,
    partition: str = "desk",
    occurred_at: datetime | None = None,
    using: str | None = None,
    **fields: Any,
) -> AuditEvent:
    """Append one event to ``partition``'s chain in the current transaction and return it.

    ``fields`` are the other ``AuditEvent`` columns (source, destination,
    their objects and versions, patient_link_id, record_key, run_id, the three
    payload hashes, detail); unknown names raise ``TypeError``. Outside a
    transaction the append runs in its own. ``occurred_at`` defaults to now.
    """
    unknown = set(fields) - _FIELDS
    if unknown:
        raise TypeError(f"record_event() got unknown fields: {', '.join(sorted(unknown))}")
    check_detail(fields.get("detail") or {})
    using = using or router.db_for_write(AuditEvent)
    values = {
        **{name: AuditEvent._meta.get_field(name).get_default() for name in _FIELDS},
        **fields,
        "action": action,
        "outcome": outcome,
        "actor": actor,
        "partition": partition,
        "occurred_at": occurred_at or datetime.now(timezone.utc),
    }
    with transaction.atomic(using=using, savepoint=False), connections[using].cursor() as cursor:
        seq, prev_hash = _lock_head(cursor, partition)
        values.update(partition_seq=seq + 1, prev_hash=prev_hash)
        values["hash"] = event_hash(values)
        row = [values[c] for c in _COLUMNS]
        row[_COLUMNS.index("detail")] = AuditEvent._meta.get_field("detail").get_db_prep_value(
            values["detail"], connections[using]
        )
        cursor.execute(_APPEND, [values["partition_seq"], values["hash"], partition, *row])
        event = AuditEvent(id=cursor.fetchone()[0], **values)
    event._state.adding, event._state.db = False, using
    return event


def _lock_head(cursor, partition: str) -> tuple[int, str]:
    """Lock the partition's head row, creating it at the genesis on first use."""
    cursor.execute(_LOCK_HEAD, [partition])
    found = cursor.fetchone()
    if found is None:
        cursor.execute(_NEW_HEAD, [partition, GENESIS])
        cursor.execute(_LOCK_HEAD, [partition])
        found = cursor.fetchone()
    return found
