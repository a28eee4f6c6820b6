"""Identity rules the engine relies on to find, never duplicate, a record.

A site record is (site, EHR id, versioned object uid, archetype path); the
mapping layer stamps each central resource with an identifier in
``SOURCE_SYSTEM`` built from it, so a repeated write matches the resource it
created before (If-None-Exist) instead of creating a twin. The mapping layer
builds and reads that identifier (``sync.mapping.identifiers``); the engine
reads it through ``source_identifier_value``. Records are serialised by
``record_key``: one run at a time per key, versions in order.
"""
from __future__ import annotations

import uuid

from sync.mapping.identifiers import source_identifier_value
from sync.mapping.terminology import SOURCE_SYSTEM

# One identifier system per purpose, all ours; values never hold clinical data.
EHR_SYSTEM = "urn:conflictdesk:ehr"
SUBJECT_SYSTEM_PREFIX = "urn:conflictdesk:subject:"
CENTRAL = "central"
BACKFILL_PREFIX = "backfill:"
# uuid5 namespace for composition uids the engine chooses itself (reverse creates).
_COMPOSITION_NS = uuid.UUID("6f3c1c0e-5d3a-4c53-9b1e-2f7f1d6c9a10")
_PROVENANCE_NS = uuid.UUID("a3e4f0d2-7b1c-4e8a-9d6f-1c2b3a4d5e6f")

__all__ = [
    "CENTRAL",
    "EHR_SYSTEM",
    "SOURCE_SYSTEM",
    "site_source",
    "record_key",
    "central_record_key",
    "versioned_object_uid",
    "version_number",
    "source_identifier_value",
    "ehr_identifier",
    "subject_identifier",
    "provenance_id",
    "composition_uid_for",
]


def backfill_source(patient_link_id: int) -> str:
    """The ``source`` of a backfill's change events (``sync.patients.backfill``): a golden record's existing
    central version delivered to a registration linked late. Its runs are central runs (``chain_source``)."""
    return f"{BACKFILL_PREFIX}{patient_link_id}"


def chain_source(source: str) -> str:
    """The audit chain a change's source writes to: a backfill's is the centre's."""
    return CENTRAL if source.startswith(BACKFILL_PREFIX) else source


def site_source(site_name: str) -> str:
    """The ``source``/``destination`` label of a site, as ChangeEvent and audit use it."""
    return f"site:{site_name}"


def record_key(site_name: str, vo_uid: str) -> str:
    return f"site:{site_name}:{vo_uid}"


def central_record_key(resource_type: str, resource_id: str) -> str:
    """Key of a record created centrally (no site composition yet)."""
    return f"central:{resource_type}/{resource_id}"


def versioned_object_uid(version_uid: str) -> str:
    """``uuid::system::3`` -> ``uuid``."""
    return version_uid.split("::", 1)[0]


def version_number(version_uid: str) -> int:
    """``uuid::system::3`` -> 3."""
    return int(version_uid.rsplit("::", 1)[1])


def ehr_identifier(site_name: str, ehr_id: str) -> dict:
    return {"system": EHR_SYSTEM, "value": f"{site_name}|{ehr_id}"}


def subject_identifier(subject_id: str, namespace: str) -> dict:
    """A site's EHR subject (external ref) as a Patient identifier shared across sites."""
    if namespace.startswith(("http://", "https://", "urn:")):
        system = namespace
    else:
        system = SUBJECT_SYSTEM_PREFIX + namespace
    return {"system": system, "value": subject_id}


def provenance_id(version_uid: str) -> str:
    """One Provenance per source version, at an id derived from it.

    R4 Provenance has no ``identifier`` to make a conditional create on, so a
    retried write PUTs to this same id instead of creating a second one.
    """
    return "cd-prov-" + str(uuid.uuid5(_PROVENANCE_NS, version_uid))


def composition_uid_for(resource_ref: str, site_name: str) -> str:
    """A stable composition uid for a centrally created record at one site.

    Deterministic, so a retried create names the same composition and the
    engine can look it up before creating a second one.
    """
    return str(uuid.uuid5(_COMPOSITION_NS, f"{site_name}|{resource_ref}"))
