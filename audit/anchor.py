"""Anchoring chain heads on the central FHIR server, and checking the anchors.

The hash chain proves the rows agree with each other, not that nobody
rewrote all of them: the table owner could recompute every hash. So each
partition's head is written, now and then, as an AuditEvent on the central
server (another system, other administrators). ``verify_anchors`` reads
them back and checks the local row at the anchored seq still has the
anchored hash; since every hash covers its predecessor, that fixes the
whole prefix up to the anchor. Read it together with ``audit_verify``.

The client is duck-typed, so tests pass a fake and the engine passes
``sync.clients.fhir.FHIRClient``:

* ``create(resource: dict)`` returns an object with ``.id`` and ``.version_id``;
* ``read(resource_type: str, resource_id: str)`` returns the resource as a
  dict, or an object holding it in ``.resource``; a missing resource raises
  an exception whose ``.status`` is 404 or 410.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from django.db.models import Max

from .fhir import anchor_resource, anchored_head
from .models import AuditAnchor, AuditEvent, AuditHead
from .record import system_actor

_GONE = (404, 410)


@dataclass(frozen=True)
class AnchorProblem:
    partition: str
    seq: int
    fhir_id: str
    problem: str


def anchor_heads(fhir_client: Any, *, actor: str | None = None) -> list[AuditAnchor]:
    """Anchor every partition whose head moved since its last anchor; return the new anchors.

    Plain function so a Celery beat task or cron can call it. The server write
    comes first: if the local insert then fails, the orphan on the server is
    harmless and the next run anchors again.
    """
    anchored = dict(AuditAnchor.objects.values_list("partition").annotate(Max("seq")))
    anchors = []
    for head in AuditHead.objects.filter(seq__gt=0).order_by("partition"):
        if anchored.get(head.partition, 0) >= head.seq:
            continue
        now = datetime.now(timezone.utc)
        written = fhir_client.create(anchor_resource(head.partition, head.seq, head.hash, now, actor or system_actor()))
        anchors.append(
            AuditAnchor.objects.create(
                partition=head.partition,
                seq=head.seq,
                hash=head.hash,
                fhir_id=written.id,
                fhir_version=written.version_id or "",
                anchored_at=now,
            )
        )
    return anchors


def verify_anchors(fhir_client: Any) -> list[AnchorProblem]:
    """Re-read every anchor from the server; list where the local chain no longer matches it."""
    problems = []
    for anchor in AuditAnchor.objects.order_by("partition", "seq"):
        problem = _check(fhir_client, anchor)
        if problem:
            problems.append(AnchorProblem(anchor.partition, anchor.seq, anchor.fhir_id, problem))
    return problems


def _check(fhir_client: Any, anchor: AuditAnchor) -> str | None:
    try:
        got = fhir_client.read("AuditEvent", anchor.fhir_id)
    except Exception as exc:
        if getattr(exc, "status", None) in _GONE:
            return f"anchor AuditEvent/{anchor.fhir_id} is gone from the server"
        raise
    partition, seq, hash_ = anchored_head(getattr(got, "resource", got))
    if (partition, seq, hash_) != (anchor.partition, anchor.seq, anchor.hash):
        return f"local anchor row differs from the server's {partition}#{seq} {hash_}"
    local = AuditEvent.objects.filter(partition=partition, partition_seq=seq).values_list("hash", flat=True).first()
    if local is None:
        return f"anchored event {partition}#{seq} is missing from the local chain"
    if local != hash_:
        return f"local chain rewritten: {partition}#{seq} has hash {local}, anchored {hash_}"
    return None
