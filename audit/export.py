"""Reading the audit trail out: chain of custody for one record, and time-range exports.

Every export row carries the event's ``hash`` and ``prev_hash`` next to its
canonical content, so an auditor can recompute the chain offline with the
rule in ``audit.chain``. Patients appear as link ids only.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import IO, Iterable, Iterator

from django.db.models import QuerySet

from .chain import CONTENT_FIELDS, canonical_json, event_content
from .fhir import event_resource, validate
from .models import AuditEvent

EXPORT_FIELDS = ("id", *CONTENT_FIELDS, "hash")


def chain_of_custody(record_key: str) -> list[AuditEvent]:
    """Every event about one record, first detection to read-back, in the order they happened."""
    return list(AuditEvent.objects.filter(record_key=record_key).order_by("occurred_at", "partition", "partition_seq"))


def events_between(since: datetime, until: datetime) -> QuerySet[AuditEvent]:
    """Events with ``since <= occurred_at < until``, oldest first."""
    return AuditEvent.objects.filter(occurred_at__gte=since, occurred_at__lt=until).order_by("occurred_at", "id")


def export_row(event: AuditEvent) -> dict:
    """The canonical content plus ``id`` and ``hash``: what CSV and JSON Lines carry."""
    return {"id": event.pk, **event_content(_field_values(event)), "hash": event.hash}


def write_jsonl(events: Iterable[AuditEvent], out: IO[str]) -> int:
    return _write_lines((canonical_json(export_row(e)) for e in events), out)


def write_fhir_ndjson(events: Iterable[AuditEvent], out: IO[str]) -> int:
    """FHIR R4 AuditEvents, one per line (the Bulk Data ndjson convention), each validated first."""
    return _write_lines((json.dumps(validate(event_resource(e)), separators=(",", ":")) for e in events), out)


def write_csv(events: Iterable[AuditEvent], out: IO[str]) -> int:
    """One row per event; ``detail`` as its canonical JSON, missing numbers as empty cells."""
    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for event in events:
        row = export_row(event)
        row["detail"] = canonical_json(row["detail"])
        writer.writerow(row)
        count += 1
    return count


WRITERS = {"fhir": write_fhir_ndjson, "csv": write_csv, "jsonl": write_jsonl}
CONTENT_TYPES = {"fhir": "application/fhir+ndjson", "csv": "text/csv", "jsonl": "application/jsonl"}
SUFFIX = {"fhir": "ndjson", "csv": "csv", "jsonl": "jsonl"}
BATCH = 1000  # events per chunk of a streamed export


def stream(events: QuerySet[AuditEvent], fmt: str) -> Iterator[str]:
    """The events in ``fmt``, in batches through the same writers (CSV: one header), for a streamed download."""
    write, first, chunk, batch = WRITERS[fmt], True, [], BATCH
    for event in events.iterator(chunk_size=batch):
        chunk.append(event)
        if len(chunk) == batch:
            yield _chunk(write, chunk, fmt, first)
            chunk, first = [], False
    if chunk or first:
        yield _chunk(write, chunk, fmt, first)


def _chunk(write, events, fmt: str, first: bool) -> str:
    out = io.StringIO()
    write(events, out)
    text = out.getvalue()
    return text.split("\n", 1)[1] if fmt == "csv" and not first else text


def _field_values(event: AuditEvent) -> dict:
    return {name: getattr(event, name) for name in CONTENT_FIELDS}


def _write_lines(lines: Iterator[str], out: IO[str]) -> int:
    count = 0
    for line in lines:
        out.write(line + "\n")
        count += 1
    return count
