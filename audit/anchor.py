"""Anchoring chain heads on the central FHIR server, and checking the anchors.

The hash chain proves the rows agree with each other, not that nobody
rewrote all of them: the table owner could recompute every hash. So each
partition's head is written, now and then, as an AuditEvent on the central
server (another system, other administrators). ``verify_anchors`` reads
them back and checks the local row at the anchored seq still has the
anchored hash; since every hash covers its predecessor, that fixes the
whole prefix up to the anchor. Read it together with ``audit_verify``.

Verification trusts the server, not the local anchor rows (which the table
owner could delete along with a cut tail): it lists this installation's
anchors from the server (``source.site`` names the installation) and reads
each local anchor at the version it was written (a later edit on the server
is itself a problem). Every anchored head must still be in the local chain.

The client is duck-typed, so tests pass a fake and the engine passes
``sync.clients.fhir.FHIRClient``:

* ``create(resource: dict)`` returns an object with ``.id`` and ``.version_id``;
* ``read(resource_type, resource_id)`` and ``vread(resource_type, resource_id,
  version_id)`` return the resource as a dict, or an object holding it in
  ``.resource``; a missing resource raises an exception whose ``.status`` is
  404 or 410;
* ``search(resource_type, params)`` yields the matching resources as dicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Max

from .fhir import ACTION_SYSTEM, ANCHOR_CODE, anchor_resource, anchored_head
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
        written = fhir_client.create(anchor_resource(head.partition, head.seq, head.hash, now, actor or system_actor(),
                                                     installation()))
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


def installation() -> str:
    """Names this installation's anchors on a server several may share (default: the database's name)."""
    return settings.CONFLICTDESK_AUDIT_INSTALLATION or connection.settings_dict["NAME"]


def verify_anchors(fhir_client: Any) -> list[AnchorProblem]:
    """Check every anchor, as listed by the server and by the local rows; list where the local chain differs."""
    problems, checked = [], set()
    for anchor in AuditAnchor.objects.order_by("partition", "seq"):
        checked.add(anchor.fhir_id)
        problem = _check(fhir_client, anchor)
        if problem:
            problems.append(AnchorProblem(anchor.partition, anchor.seq, anchor.fhir_id, problem))
    # Anchors the local table no longer lists (rows deleted by its owner) still bind the chain.
    params = {"type": f"{ACTION_SYSTEM}|{ANCHOR_CODE}", "site": installation()}
    for resource in fhir_client.search("AuditEvent", params):
        resource = getattr(resource, "resource", resource)
        if resource.get("id") in checked:
            continue
        partition, seq, hash_ = anchored_head(resource)
        problem = _versioned(resource, "1") or _check_chain(partition, seq, hash_)
        if problem:
            problems.append(AnchorProblem(partition, seq, resource.get("id", ""), problem))
    return problems


def _check(fhir_client: Any, anchor: AuditAnchor) -> str | None:
    try:
        current = fhir_client.read("AuditEvent", anchor.fhir_id)
        got = fhir_client.vread("AuditEvent", anchor.fhir_id, anchor.fhir_version) if anchor.fhir_version else current
    except Exception as exc:
        if getattr(exc, "status", None) in _GONE:
            return f"anchor AuditEvent/{anchor.fhir_id} is gone from the server"
        raise
    partition, seq, hash_ = anchored_head(getattr(got, "resource", got))
    if (partition, seq, hash_) != (anchor.partition, anchor.seq, anchor.hash):
        return f"local anchor row differs from the server's {partition}#{seq} {hash_}"
    return _versioned(getattr(current, "resource", current), anchor.fhir_version) or _check_chain(partition, seq, hash_)


def _versioned(resource: dict, version: str) -> str | None:
    """An anchor is written once: a later version on the server means someone edited it."""
    now = (resource.get("meta") or {}).get("versionId")
    if version and now and now != version:
        return f"anchor AuditEvent/{resource.get('id')} was changed on the server (version {now}, anchored {version})"
    return None


def _check_chain(partition: str, seq: int, hash_: str) -> str | None:
    local = AuditEvent.objects.filter(partition=partition, partition_seq=seq).values_list("hash", flat=True).first()
    if local is None:
        return f"anchored event {partition}#{seq} is missing from the local chain"
    if local != hash_:
        return f"local chain rewritten: {partition}#{seq} has hash {local}, anchored {hash_}"
    return None
