"""Who changed each side of a conflict, and when: "Dr. X at site1, 10:42".

Read from what the conflict holds, never from a server: the site side from the
committer the engine recorded or else the composition's composer, the central side
from the author and commit time the engine recorded (a reverse-path conflict: the
changed version's Provenance person and meta.lastUpdated, ``sync.workflow.central_author``),
else a Provenance agent among its resources, or else the resources' ``meta.source``. A clinician
weighs a colleague's edit against a lab interface's differently, so when nothing
names a person the system that wrote it is named instead, never "unknown".
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from django.utils.dateparse import parse_datetime

# Provenance agents whose ``who`` is a person (the rest are devices, organisations, software).
PERSON_TYPES = ("Practitioner/", "PractitionerRole/", "Patient/", "RelatedPerson/")


@dataclass(frozen=True)
class Author:
    who: str  # a person's name, or the system that wrote the side when no person is named
    person: bool
    where: str  # the site's name, or "central"
    when: datetime | None


def site_author(conflict) -> Author:
    site = conflict.record_link.site.name
    composition = conflict.openehr_composition or {}
    who, person = conflict.openehr_changed_by, True
    if not who:
        who, person = _composer(composition)
    if not who:
        who, person = _originating_system(composition) or f"{site}'s openEHR server", False
    return Author(who, person, site, conflict.openehr_changed_at)


def central_author(conflict) -> Author:
    resources = conflict.fhir_resources or []
    who, person = conflict.fhir_changed_by, True
    if not who:
        who, person = _provenance_agent(resources)
    if not who:
        who, person = _meta_source(resources) or "the central FHIR server", False
    return Author(who, person, "central", conflict.fhir_changed_at or _last_updated(resources))


def _composer(composition: dict) -> tuple[str, bool]:
    composer = composition.get("composer") or {}
    if composer.get("_type") == "PARTY_SELF":
        return "the patient", True
    return composer.get("name") or "", True


def _originating_system(composition: dict) -> str:
    """The feeder system a composition came from (a lab interface, an importer), if it says."""
    audit = (composition.get("feeder_audit") or {}).get("originating_system_audit") or {}
    return audit.get("system_id") or ""


def _provenance_agent(resources: list[dict]) -> tuple[str, bool]:
    agents = [agent.get("who") or {} for r in resources if r.get("resourceType") == "Provenance"
              for agent in r.get("agent") or []]
    people = [who for who in agents if (who.get("reference") or "").startswith(PERSON_TYPES) and who.get("display")]
    if people:
        return people[0]["display"], True
    named = [who["display"] for who in agents if who.get("display")]
    return (named[0], False) if named else ("", False)


def _meta_source(resources: list[dict]) -> str:
    """The writing system from ``meta.source`` (a URI); HAPI's own "#request-id" names none."""
    for resource in resources:
        source = (resource.get("meta") or {}).get("source") or ""
        parts = urlsplit(source.split("#", 1)[0])
        if parts.netloc or parts.path:
            return parts.netloc or parts.path
    return ""


def _last_updated(resources: list[dict]) -> datetime | None:
    stamps = [parse_datetime(r["meta"]["lastUpdated"]) for r in resources
              if (r.get("meta") or {}).get("lastUpdated")]
    return max((s for s in stamps if s), default=None)
