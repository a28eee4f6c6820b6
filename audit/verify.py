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
    """Recompute every hash of one partition, in sequence order, streaming from the database."""
    head = AuditHead.objects.filter(partition=partition).values_list("seq", "hash").first()
    rows = (
        AuditEvent.objects.filter(partition=partition)
        .order_by("partition_seq", "id")
        .values(*_ROW_FIELDS)
        .iterator(chunk_size=5000)
    )
    seen, broken = first_break(partition, rows, head)
    return PartitionReport(partition, seen, broken)


def verify_all(only: str | None = None) -> list[PartitionReport]:
    return [verify_partition(p) for p in ([only] if only else partitions())]
