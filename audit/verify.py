"""Walking the stored chains: the database side of ``chain.first_break``."""

from __future__ import annotations

from dataclasses import dataclass

from .chain import CONTENT_FIELDS, Break, first_break
from .models import AuditEvent, AuditHead

_ROW_FIELDS = ("id", "hash", *CONTENT_FIELDS)


@dataclass(frozen=True)
class PartitionReport:
    partition: str
    events: int
    broken: Break | None


def partitions() -> list[str]:
    """Every partition named by a head or by an event, so a lost head row is noticed too."""
    named = set(AuditHead.objects.values_list("partition", flat=True))
    named.update(AuditEvent.objects.order_by().values_list("partition", flat=True).distinct())
    return sorted(named)


def verify_partition(partition: str) -> PartitionReport:
    """Recompute every hash of one partition, in sequence order, streaming from the database.

    The head is read first and only events up to its seq are walked: an append
    commits its events and the head together, so everything up to that seq is
    committed, and events appended while we read cannot look like a broken head.
    """
    head = AuditHead.objects.filter(partition=partition).values_list("seq", "hash").first()
    events = AuditEvent.objects.filter(partition=partition)
    if head is not None:
        events = events.filter(partition_seq__lte=head[0])
    rows = (
        events
        .order_by("partition_seq", "id")
        .values(*_ROW_FIELDS)
        .iterator(chunk_size=5000)
    )
    seen, broken = first_break(partition, rows, head)
    if broken is None and head is not None:
        broken = _rows_beyond_head(partition, head)
    return PartitionReport(partition, seen, broken)


def _rows_beyond_head(partition: str, head: tuple[int, str]) -> Break | None:
    """Rows past the head we read are legitimate only if the head has since moved past them
    (appends in flight); a row the head never reaches was inserted behind the chain's back."""
    beyond = (
        AuditEvent.objects.filter(partition=partition, partition_seq__gt=head[0])
        .order_by("-partition_seq")
        .values_list("partition_seq", "id", "hash")
        .first()
    )
    if beyond is None:
        return None
    now = AuditHead.objects.filter(partition=partition).values_list("seq", "hash").first()
    if now is not None and now[0] >= beyond[0]:
        return None
    seq, event_id, stored = beyond
    return Break(partition, seq, event_id, "head", (now or head)[1], stored, True, False)


def verify_all(only: str | None = None) -> list[PartitionReport]:
    return [verify_partition(p) for p in ([only] if only else partitions())]
