"""Hashing and verification of the audit chain: pure, no Django.

The canonical form of an event is what ``audit_verify`` and an outside auditor
recompute, so it is fixed here and nowhere else:

* ``canonical_json``: UTF-8 JSON, keys sorted, no whitespace
  (``separators=(",", ":")``), non-ASCII kept as is. Close to RFC 8785 but not
  a claim of it.
* An event's content is the dict of ``CONTENT_FIELDS`` (every column except
  ``id`` and ``hash``), with ``occurred_at`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``
  in UTC, empty text as ``""`` and missing numbers as ``null``. ``prev_hash``
  and ``partition_seq`` are part of the content, so the hash fixes both the
  event and its place in the chain.
* ``hash = sha256(canonical_json(content)).hexdigest()``; the first event of a
  partition has ``prev_hash = GENESIS``.

``detail`` refuses floats: PostgreSQL's jsonb may print a float differently
from Python (``1e+20`` comes back as ``100000000000000000000``), which would
break the hash of an honest row. Ids and codes are ints or strings anyway.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

GENESIS = "0" * 64

CONTENT_FIELDS = (
    "partition",
    "partition_seq",
    "occurred_at",
    "actor",
    "actor_kind",
    "action",
    "outcome",
    "source",
    "source_object",
    "source_version",
    "destination",
    "destination_object",
    "destination_version",
    "patient_link_id",
    "record_key",
    "run_id",
    "source_hash",
    "written_hash",
    "readback_hash",
    "detail",
    "prev_hash",
)
NULLABLE_FIELDS = frozenset({"patient_link_id", "run_id"})


def canonical_json(obj: Any) -> str:
    """The one serialisation every hash in ConflictDesk is taken over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def payload_hash(obj: Any) -> str:
    """SHA-256 of a payload's canonical JSON (source as read, as written, as read back).

    Key order and whitespace do not matter, values do: two payloads hash alike
    exactly when they are the same JSON document. Floats are hashed as Python
    prints them, so ``7.20`` and ``7.2`` (both parsed to the float 7.2) match.
    """
    return sha256_hex(canonical_json(obj))


def format_timestamp(moment: datetime) -> str:
    """UTC with microseconds and a ``Z``; naive datetimes are refused, not guessed."""
    if moment.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_detail(value: Any, path: str = "detail") -> None:
    """Refuse what jsonb would not give back byte-for-byte (see module docstring)."""
    if isinstance(value, float):
        raise TypeError(f"{path} holds a float; pass ids and codes as int or str")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path} has a non-string key {key!r}")
            check_detail(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_detail(item, f"{path}[{index}]")
    elif not (value is None or isinstance(value, (str, int, bool))):
        raise TypeError(f"{path} holds a {type(value).__name__}; only JSON types are allowed")


def event_content(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical content of one event, from a row or from the values about to be inserted."""
    content = {}
    for name in CONTENT_FIELDS:
        value = fields.get(name)
        if name == "occurred_at":
            value = format_timestamp(value)
        elif name == "detail":
            value = value or {}
        elif value is None and name not in NULLABLE_FIELDS:
            value = ""
        content[name] = value
    return content


def event_hash(fields: Mapping[str, Any]) -> str:
    return sha256_hex(canonical_json(event_content(fields)))


@dataclass(frozen=True)
class Break:
    """The first place a partition's chain stops telling the truth.

    ``kind`` is ``content`` (the row's hash does not match what it says),
    ``linkage`` (its ``prev_hash`` is not the previous row's hash), ``gap``
    (a sequence number is missing or repeated: a row was deleted or moved) or
    ``head`` (the head table and the last row disagree: the tail was cut).
    ``expected``/``stored`` are the hashes that disagree: recomputed vs stored
    ``hash`` for content, previous ``hash`` vs stored ``prev_hash`` otherwise.
    """

    partition: str
    seq: int | None
    event_id: int | None
    kind: str
    expected: str
    stored: str
    content_ok: bool
    link_ok: bool

    def describe(self) -> str:
        return (
            f"partition {self.partition!r} broken at seq {self.seq} (event id {self.event_id}): {self.kind}; "
            f"expected {self.expected}, stored {self.stored}; "
            f"content {'ok' if self.content_ok else 'ALTERED'}, link {'ok' if self.link_ok else 'BROKEN'}"
        )


def first_break(
    partition: str,
    rows: Iterable[Mapping[str, Any]],
    head: tuple[int, str] | None,
) -> tuple[int, Break | None]:
    """Walk one partition's rows in ``partition_seq`` order; return (rows seen, first break or None).

    ``rows`` are mappings with ``id``, ``hash`` and the content fields;
    ``head`` is the head table's (seq, hash), None when it has no row.
    """
    prev_seq, prev_hash, seen = 0, GENESIS, 0
    for row in rows:
        seen += 1
        recomputed = event_hash(row)
        content_ok = recomputed == row["hash"]
        link_ok = row["prev_hash"] == prev_hash
        seq = row["partition_seq"]
        if seq != prev_seq + 1:
            return seen, Break(partition, prev_seq + 1, row["id"], "gap", prev_hash, row["prev_hash"], content_ok, link_ok)
        if not content_ok:
            return seen, Break(partition, seq, row["id"], "content", recomputed, row["hash"], content_ok, link_ok)
        if not link_ok:
            return seen, Break(partition, seq, row["id"], "linkage", prev_hash, row["prev_hash"], content_ok, link_ok)
        prev_seq, prev_hash = seq, row["hash"]
    if head != (prev_seq, prev_hash) and not (head is None and prev_seq == 0):
        head_seq, head_hash = head or (0, GENESIS)
        return seen, Break(partition, min(head_seq, prev_seq) + 1, None, "head", head_hash, prev_hash, True, False)
    return seen, None
