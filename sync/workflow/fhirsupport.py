"""Engine-side FHIR helpers used until (or unless) the mapping layer provides its own.

``build_provenance`` is the operational Provenance FHIRconnect has the engine
generate on every composition -> FHIR run; ``validate_fhir`` checks a resource
against the fhir.resources R4B model. Both are pure.
"""
from __future__ import annotations

from datetime import datetime, timezone

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError


_ACTIVITY = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
_AGENT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"


def build_provenance(resources: list[dict], site: str, ehr_id: str, version_uid: str) -> dict:
    """Where the resources came from: the site's composition version, assembled by the engine."""
    return {
        "resourceType": "Provenance",
        "target": [{"reference": f"{r['resourceType']}/{r['id']}"} for r in resources if r.get("id")],
        "recorded": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "activity": {"coding": [{"system": _ACTIVITY, "code": "UPDATE" if not version_uid.endswith("::1") else "CREATE"}]},
        "agent": [
            {
                "type": {"coding": [{"system": _AGENT_TYPE, "code": "assembler"}]},
                "who": {"display": "ConflictDesk sync engine"},
            }
        ],
        "entity": [
            {
                "role": "source",
                "what": {"identifier": {"system": f"urn:conflictdesk:openehr:{site}", "value": f"{ehr_id}/{version_uid}"}},
            }
        ],
    }


def validate_fhir(resource: dict) -> list[str]:
    """R4B model errors as ``path: message`` strings (the offending values are left out)."""
    try:
        model = get_fhir_model_class(resource["resourceType"])
    except (KeyError, ValueError) as exc:
        return [f"resourceType: {exc.__class__.__name__}"]
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        return [f"{resource['resourceType']}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    return []
