"""Appending to the audit chain, inside the caller's transaction.

Each partition ("site:<name>", "central", "desk") is its own chain with one
row in ``AuditHead``. An append locks that row (``audit_lock_head``, a
database function), hashes the event onto the head and inserts it; the
database's trigger checks the new rows continue the head and moves it (the
application role may not write the head itself: ``audit.db_roles``). All in
the caller's transaction: the event commits or rolls back with the state
change it describes, and two workers only wait for each other when they
append to the same partition.

The head lock is held until the caller commits, so record the event as the
last step of a transaction. A transaction that appends to several partitions
must take them in a fixed order (sorted by name) or risk a deadlock.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Mapping, Sequence

from django.db import connections, router, transaction

from .chain import check_detail, event_hash
from .models import AuditEvent

_HOST = socket.gethostname()

# The head is locked (and created at the genesis) by a database function and moved by a trigger
# on the rows (migration 0003): the application role may not write the head table itself.
_LOCK_HEAD = "SELECT out_seq, out_hash FROM audit_lock_head(%s)"

_COLUMNS = ("partition_seq",) + tuple(
    f.column for f in AuditEvent._meta.concrete_fields if f.column not in ("id", "partition_seq")
)
_REQUIRED = frozenset({"action", "outcome", "actor"})
_FIELDS = frozenset(_COLUMNS) - {"partition", "partition_seq", "prev_hash", "hash"} - _REQUIRED
_DETAIL = AuditEvent._meta.get_field("detail")
_MAX_ROWS = 1000  # PostgreSQL takes at most 65535 parameters per statement
_DEFAULTS = {name: AuditEvent._meta.get_field(name).get_default() for name in _FIELDS}


def system_actor() -> str:
    """The actor for work done by the engine: ``worker@<host>:<pid>``.

    The pid is read on every call because Celery forks its workers after
    this module is imported.
    """
    return f"worker@{_HOST}:{os.getpid()}"


def record_event(*, action: str, outcome: str, actor: str, partition: str = "desk", using: str | None = None,
                 **fields: Any) -> AuditEvent:
    """Append one event to ``partition``'s chain in the current transaction and return it.

    ``fields`` are the other ``AuditEvent`` columns (occurred_at, actor_kind,
    source, destination, their objects and versions, patient_link_id,
    record_key, run_id, the three payload hashes, detail); unknown names raise
    ``TypeError``. ``occurred_at`` defaults to now; ``actor_kind`` to "system"
    for a ``system_actor()`` and "user" for anyone else. Outside a
    transaction the append runs in its own.
    """
    return record_events([dict(fields, action=action, outcome=outcome, actor=actor)], partition=partition,
                         using=using)[0]


def record_events(events: Sequence[Mapping[str, Any]], *, partition: str = "desk",
                  using: str | None = None) -> list[AuditEvent]:
    """Append several events to one partition, in order, with one head lock and one INSERT.

    Each mapping holds ``record_event``'s keyword arguments. For a step that
    leaves several events in one transaction (one per resource of a FHIR
    transaction, say): it is several times cheaper than one call per event.
    """
    rows = [_values(partition, event) for event in events]
    if not rows:
        return []
    using = using or router.db_for_write(AuditEvent)
    connection = connections[using]
    with transaction.atomic(using=using, savepoint=False), connection.cursor() as cursor:
        seq, prev_hash = _lock_head(cursor, partition)
        ids = {}
        for start in range(0, len(rows), _MAX_ROWS):
            chunk, params = rows[start:start + _MAX_ROWS], []
            for values in chunk:
                seq += 1
                values.update(partition_seq=seq, prev_hash=prev_hash)
                values["hash"] = prev_hash = event_hash(values)
                params.extend(_DETAIL.get_db_prep_value(values[c], connection) if c == "detail" else values[c]
                              for c in _COLUMNS)
            cursor.execute(_append_sql(len(chunk)), params)
            ids.update((row_seq, pk) for pk, row_seq in cursor.fetchall())
    made = [AuditEvent(id=ids[values["partition_seq"]], **values) for values in rows]
    for event in made:
        event._state.adding, event._state.db = False, using
    return made


def _values(partition: str, event: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(event) - _FIELDS - _REQUIRED
    if unknown:
        raise TypeError(f"unknown audit event fields: {', '.join(sorted(unknown))}")
    missing = _REQUIRED - {name for name in _REQUIRED if event.get(name)}
    if missing:
        raise TypeError(f"audit event needs {', '.join(sorted(missing))}")
    check_detail(event.get("detail") or {})
    values = {**_DEFAULTS, **event, "partition": partition}
    if "actor_kind" not in event:
        values["actor_kind"] = "system" if values["actor"].startswith("worker@") else "user"
    values["occurred_at"] = values["occurred_at"] or datetime.now(timezone.utc)
    values["detail"] = dict(values["detail"] or {})  # never share the default dict between events
    return values


@lru_cache(maxsize=64)
def _append_sql(count: int) -> str:
    """Insert ``count`` rows in one statement; the database's trigger checks the links and moves the head."""
    row = f"({', '.join(['%s'] * len(_COLUMNS))})"
    return (
        f"INSERT INTO audit_auditevent ({', '.join(_COLUMNS)}) VALUES {', '.join([row] * count)} "
        "RETURNING id, partition_seq"
    )


def _lock_head(cursor, partition: str) -> tuple[int, str]:
    """Lock the partition's head row, created at the genesis on first use (by ``audit_lock_head``)."""
    cursor.execute(_LOCK_HEAD, [partition])
    return cursor.fetchone()
