"""Who changed a central resource, and when: what the desk shows beside the central side of a conflict.

A reverse-path conflict's central side is one resource at one version (the change the run syncs).
Its commit time is that version's ``meta.lastUpdated`` (the server's clock, as the site side's is
EHRbase's commit time). Its author is a person agent of a Provenance that targets the resource and
was stored with that version or after it, before the next one: HAPI strips the version from
``Provenance.target``, so the time window is what ties a Provenance to a version. Not taken: the
engine's own Provenances (they name the site's writer, not a central one), and a Provenance whose
``recorded`` lies before the version by more than clock skew (it records an earlier activity, posted
late). An agent's name comes from its ``display``, else from the Practitioner (PractitionerRole,
Patient, RelatedPerson) it references.

Only what is known is returned: no person found, no name (the desk then names the writing system
from ``meta.source``, or the central server); a wrong name is worse than none. A server that does
not answer fails the step like any read (TransientError: the run retries); a refused search or
read leaves the name out.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.utils.dateparse import parse_datetime

from sync.clients.errors import ClientError, NotFound, TransientError
from sync.mapping.provenance import ENGINE_DEVICE

# Provenance agents whose ``who`` is a person (the rest are devices, organisations, software).
PERSON_TYPES = ("Practitioner/", "PractitionerRole/", "Patient/", "RelatedPerson/")
# How far a Provenance's own ``recorded`` (the writer's clock) may lie before the version it records.
CLOCK_SKEW = timedelta(minutes=2)


def central_change(fhir, changed: dict) -> dict:
    """``fhir_changed_at`` / ``fhir_changed_by`` of a Conflict for the central resource ``changed`` (as
    the run read it, at its version), each only when known."""
    meta = changed.get("meta") or {}
    at = _when(meta.get("lastUpdated"))
    if at is None:
        return {}
    found = {"fhir_changed_at": at}
    rtype, rid, version = changed.get("resourceType"), changed.get("id"), meta.get("versionId")
    if not rtype or not rid:
        return found
    try:
        until = _next_version_at(fhir, rtype, rid, version)
        who = _author(fhir, f"{rtype}/{rid}", at, until)
    except TransientError:
        raise
    except (ClientError, _Unbounded):
        return found
    if who:
        found["fhir_changed_by"] = who[:200]
    return found


class _Unbounded(Exception):
    """A later version exists but its time cannot be read: no Provenance can be tied to this one."""


def _next_version_at(fhir, rtype: str, rid: str, version: str | None) -> datetime | None:
    if not (version or "").isdigit():
        raise _Unbounded
    try:
        following = fhir.vread(rtype, rid, str(int(version) + 1))
    except NotFound:
        return None  # the version is the newest
    stamp = _when((following.get("meta") or {}).get("lastUpdated"))
    if stamp is None:
        raise _Unbounded
    return stamp


def _author(fhir, ref: str, at: datetime, until: datetime | None) -> str:
    candidates = []
    for provenance in fhir.search("Provenance", {"target": ref, "_sort": "_lastUpdated", "_count": "50"}):
        if ref not in {_unversioned(t.get("reference") or "") for t in provenance.get("target") or []}:
            continue
        agents = [agent.get("who") or {} for agent in provenance.get("agent") or []]
        if any(who.get("reference") == ENGINE_DEVICE for who in agents):
            continue
        stored = _when((provenance.get("meta") or {}).get("lastUpdated"))
        if stored is None or stored < at or (until is not None and stored >= until):
            continue
        recorded = _when(provenance.get("recorded"))
        if recorded is not None and recorded < at - CLOCK_SKEW:
            continue
        candidates.append((stored, agents))
    for _, agents in sorted(candidates, key=lambda c: c[0]):  # the one stored closest to the change first
        for who in agents:
            name = _person_name(fhir, who)
            if name:
                return name
    return ""


def _person_name(fhir, who: dict) -> str:
    reference = who.get("reference") or ""
    if not reference.startswith(PERSON_TYPES):
        return ""
    if who.get("display"):
        return who["display"]
    rtype, _, rid = _unversioned(reference).partition("/")
    try:
        person = fhir.read(rtype, rid)
    except NotFound:
        return ""
    if rtype == "PractitionerRole":
        return _person_name(fhir, person.get("practitioner") or {})
    return _human_name(person.get("name") or [])


def _human_name(names: list[dict]) -> str:
    usable = [n for n in names if n.get("use") not in ("old", "anonymous", "maiden")] or names
    for name in sorted(usable, key=lambda n: n.get("use") != "official"):
        if name.get("text"):
            return name["text"]
        parts = [*(name.get("prefix") or []), *(name.get("given") or []), name.get("family") or ""]
        text = " ".join(p for p in parts if p)
        if text:
            return text
    return ""


def _unversioned(reference: str) -> str:
    return reference.split("/_history/", 1)[0]


def _when(value) -> datetime | None:
    return parse_datetime(value) if isinstance(value, str) and value else None
