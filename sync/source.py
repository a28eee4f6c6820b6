"""The source of a central resource, on demand: the exact composition version it was written from.

The engine writes one Provenance per source composition version (``bundle``
PUTs it at ``provenance_id(version_uid)``), whose entity names that version at
the site: ``<site>/ehr/<ehr_id>/composition/<version_uid>`` in the system
``urn:conflictdesk:openehr-composition``. ``source_of`` follows the newest such
Provenance targeting the resource and reads that version LIVE from the site's
CDR, canonical JSON or FLAT. The Provenance is the authority; the RecordLink is
only consulted when the central server cannot be searched.

Trust: only a Provenance the engine wrote counts (its agent is the engine
Device and its id is the one derived from the version it names), and the site
in it is looked up by name among our ``Site`` rows: the URL we fetch from is
always our own configuration, never text from the central server.

Reading only: ``sync.actions.do_view_source`` is the audited door the API and
the desk use (every request leaves a ``source.viewed`` event, whatever its outcome).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from audit.models import AuditEvent
from sync.clients.errors import ClientError, NotFound, TransientError
from sync.identity import provenance_id, record_key, versioned_object_uid
from sync.mapping.provenance import ENGINE_DEVICE
from sync.models import RecordLink, Site
from sync.workflow.services import SiteConfigError, get_services

ENTITY_SYSTEM = "urn:conflictdesk:openehr-composition"
FORMATS = ("canonical", "flat")

# FHIR's own rules for a type name and a logical id: nothing else reaches the central server's query.
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_RESOURCE_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
# What the engine writes as the entity; every part ends up in a URL path at the site, so no '/', '?', '#' or '..'.
_ENTITY = re.compile(
    r"(?P<site>[-a-zA-Z0-9_]+)/ehr/(?P<ehr_id>[0-9A-Fa-f-]{8,64})"
    r"/composition/(?P<version_uid>[0-9A-Fa-f-]{8,64}::[A-Za-z0-9._-]+::[0-9]+)"
)


class SourceError(Exception):
    """Base: the source could not be returned. ``outcome`` is what the audit event records."""

    outcome = "error"


class InvalidResourceRef(SourceError):
    outcome = "invalid"


class NoProvenance(SourceError):
    """The resource has no Provenance written by the engine (not synced from a site, or not a resource)."""

    outcome = "not_found"


@dataclass
class Located:
    """Which composition version a resource came from, and how we know."""

    resource: str  # "Observation/<id>"
    site: Site
    ehr_id: str
    version_uid: str
    provenance: str  # "Provenance/<id>", or "" when located through the RecordLink
    via: str  # "provenance" | "record_link"
    record_link: RecordLink | None = None

    @property
    def vo_uid(self) -> str:
        return versioned_object_uid(self.version_uid)


class SourceUnavailable(SourceError):
    """The site (or, with no RecordLink to fall back on, the centre) could not be read now.

    Carries what the caller would have got: the hash the engine recorded when
    it last read this version (``last_synced_hash``, over the canonical
    composition) or, failing that, the RecordLink's clinical-content hash.
    """

    outcome = "unavailable"

    def __init__(self, message: str, *, located: Located | None = None, last_synced_hash: str = "",
                 last_synced_hash_of: str = ""):
        super().__init__(message)
        self.located, self.last_synced_hash, self.last_synced_hash_of = located, last_synced_hash, last_synced_hash_of


class SourceGone(SourceUnavailable):
    """The site answers, but no longer has that version (deleted composition)."""

    outcome = "gone"


@dataclass(frozen=True)
class SourceResult:
    """The composition version as the site returns it now, and how it relates to what was synced."""

    resource: str
    provenance: str
    via: str
    site: str
    ehr_id: str
    version_uid: str
    format: str
    content: dict[str, Any]
    hash: str  # payload_hash(content): same function, same canonical JSON as the engine's source_hash
    last_synced_hash: str
    last_synced_hash_of: str  # "composition" (comparable with hash for canonical) | "clinical_content" | ""
    fetched_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def matches_last_synced(self) -> bool | None:
        """For canonical JSON: is this byte-for-byte (canonically) what the engine read? None when not comparable."""
        if self.format != "canonical" or self.last_synced_hash_of != "composition":
            return None
        return self.hash == self.last_synced_hash


def source_of(resource_type: str, resource_id: str, *, fmt: str = "canonical") -> SourceResult:
    """The composition version ``resource_type/resource_id`` was written from, fetched live.

    Raises ``InvalidResourceRef`` (malformed type/id or format), ``NoProvenance``
    (no engine Provenance targets it), ``SourceUnavailable`` (site unreachable or
    misconfigured; carries the last synced hash) or ``SourceGone``.
    """
    check_format(fmt)
    return fetch(locate(resource_type, resource_id), fmt=fmt)


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise InvalidResourceRef(f"format must be one of {', '.join(FORMATS)}")


def locate(resource_type: str, resource_id: str) -> Located:
    """Newest engine Provenance targeting the resource -> (site, EHR, version uid)."""
    if not (_RESOURCE_TYPE.fullmatch(resource_type or "") and _RESOURCE_ID.fullmatch(resource_id or "")):
        raise InvalidResourceRef("not a FHIR resource type and id")
    ref = f"{resource_type}/{resource_id}"
    fhir = get_services().fhir
    try:
        found = _newest_engine_provenance(fhir, ref)
    except ClientError as exc:  # down, or refusing: the RecordLink says what the engine last wrote
        link = _record_link_of(resource_type, resource_id)
        if link is None or not link.openehr_version_uid:
            raise SourceUnavailable(f"the central server cannot be searched for the Provenance of {ref} "
                                    f"({type(exc).__name__})") from exc
        return Located(ref, link.site, link.patient_link.ehr_id, link.openehr_version_uid, "", "record_link", link)
    if found is None:
        raise NoProvenance(f"no Provenance written by the sync engine targets {ref}")
    provenance, site_name, ehr_id, version_uid = found
    site = Site.objects.filter(name=site_name).first()
    if site is None:
        raise NoProvenance(f"{ref}: its Provenance names a site this installation does not know")
    link = RecordLink.objects.filter(site=site, versioned_object_uid=versioned_object_uid(version_uid)).first()
    return Located(ref, site, ehr_id, version_uid, f"Provenance/{provenance['id']}", "provenance", link)


def fetch(located: Located, *, fmt: str = "canonical") -> SourceResult:
    """Read exactly ``located.version_uid`` from its site's CDR now."""
    services = get_services()
    last_hash, hash_of = last_synced_hash(located)

    def unavailable(cls, message, exc):
        return cls(message, located=located, last_synced_hash=last_hash, last_synced_hash_of=hash_of)

    site = located.site
    if not site.enabled:
        raise unavailable(SourceUnavailable, f"site {site.name} is disabled", None)
    try:
        # The services' client is the process's, shared with the engine: never closed here.
        composition = services.openehr(site).get_composition(located.ehr_id, located.version_uid, flat=fmt == "flat")
    except SiteConfigError as exc:
        raise unavailable(SourceUnavailable, f"site {site.name} is not configured for reading ({exc})", exc) from exc
    except NotFound as exc:
        raise unavailable(SourceGone, f"site {site.name} no longer has composition version {located.version_uid}",
                          exc) from exc
    except TransientError as exc:
        raise unavailable(SourceUnavailable, f"site {site.name} is unreachable ({type(exc).__name__}: "
                                             f"{exc.status or exc.reason})", exc) from exc
    except ClientError as exc:
        raise unavailable(SourceUnavailable, f"site {site.name} refused the read ({type(exc).__name__}: "
                                             f"status {exc.status})", exc) from exc
    return SourceResult(
        resource=located.resource, provenance=located.provenance, via=located.via, site=site.name,
        ehr_id=located.ehr_id, version_uid=composition.ref.version_uid or located.version_uid, format=fmt,
        content=composition.content, hash=services.audit.payload_hash(composition.content),
        last_synced_hash=last_hash, last_synced_hash_of=hash_of,
    )


def last_synced_hash(located: Located) -> tuple[str, str]:
    """(hash, what it is a hash of) for the version as the engine last read it."""
    event = (
        AuditEvent.objects.filter(record_key=record_key(located.site.name, located.vo_uid),
                                  source_version=located.version_uid)
        .exclude(source_hash="")
        .order_by("-occurred_at", "-pk")
        .first()
    )
    if event is not None:
        return event.source_hash, "composition"
    link = located.record_link
    if link is not None and link.openehr_version_uid == located.version_uid and link.canonical_hash:
        return link.canonical_hash, "clinical_content"
    return "", ""


def _newest_engine_provenance(fhir, ref: str):
    """(provenance, site, ehr_id, version_uid) of the newest engine Provenance targeting ``ref``, or None."""
    candidates = []
    for provenance in fhir.search("Provenance", {"target": ref, "_sort": "-_lastUpdated", "_count": "20"}):
        parsed = _engine_entity(provenance)
        if parsed is not None and ref in {t.get("reference") for t in provenance.get("target") or []}:
            last_updated = (provenance.get("meta") or {}).get("lastUpdated") or ""
            candidates.append((last_updated, _version_number(parsed[2]), provenance, parsed))
    if not candidates:
        return None
    # Newest write first; equal timestamps (HAPI keeps milliseconds) fall back to the later composition version.
    _, _, provenance, (site, ehr_id, version_uid) = max(candidates, key=lambda c: (c[0], c[1]))
    return provenance, site, ehr_id, version_uid


def _engine_entity(provenance: dict) -> tuple[str, str, str] | None:
    """The (site, ehr_id, version_uid) an engine Provenance names, or None if it is not the engine's."""
    agents = {((a.get("who") or {}).get("reference")) for a in provenance.get("agent") or []}
    if ENGINE_DEVICE not in agents:
        return None
    for entity in provenance.get("entity") or []:
        identifier = (entity.get("what") or {}).get("identifier") or {}
        if entity.get("role") != "source" or identifier.get("system") != ENTITY_SYSTEM:
            continue
        match = _ENTITY.fullmatch(identifier.get("value") or "")
        # The engine PUTs each Provenance at the id derived from its version: anything else is not ours.
        if match and provenance.get("id") == provenance_id(match["version_uid"]):
            return match["site"], match["ehr_id"], match["version_uid"]
    return None


def _version_number(version_uid: str) -> int:
    return int(version_uid.rsplit("::", 1)[1])


def _record_link_of(resource_type: str, resource_id: str) -> RecordLink | None:
    return (
        RecordLink.objects.filter(fhir_resources__contains=[{"type": resource_type, "id": resource_id}])
        .select_related("site", "patient_link")
        .order_by("-last_synced_at", "-pk")
        .first()
    )
