"""Provenance for resources produced from one composition version (FHIRconnect operational model).

activity = w3c Derivation, agents = the sync engine Device (assembler) acting on behalf of the
site Organization, entity = the source composition version (openEHR ObjectLocation style id).
"""
from __future__ import annotations

from datetime import datetime, timezone

from .identifiers import resource_id

ENGINE_DEVICE = "Device/conflictdesk-sync-engine"


def build_provenance(resources: list[dict], site: str, ehr_id: str, composition_version_uid: str, *,
                     recorded: str | None = None) -> dict:
    """One Provenance targeting every resource (by Type/id) produced from the composition version."""
    entity_id = f"{site}/ehr/{ehr_id}/composition/{composition_version_uid}"
    return {
        "resourceType": "Provenance",
        "id": resource_id(f"provenance|{entity_id}"),
        "target": [{"reference": f"{r['resourceType']}/{r['id']}"} for r in resources if r.get("id")],
        "recorded": recorded or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                                 "code": "UPDATE"}, {"system": "http://www.w3.org/ns/prov",
                                                     "code": "Derivation"}]},
        "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                        "code": "assembler"}]},
                   "who": {"reference": ENGINE_DEVICE, "display": "ConflictDesk sync engine"},
                   "onBehalfOf": {"identifier": {"system": "urn:conflictdesk:site", "value": site}}},
                  {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                        "code": "custodian"}]},
                   "who": {"identifier": {"system": "urn:conflictdesk:site", "value": site}, "display": site}}],
        "entity": [{"role": "source", "what": {"identifier": {"system": "urn:conflictdesk:openehr-composition",
                                                              "value": entity_id}}}],
    }
