"""Claim a vital-sign profile only where the value meets its unit rule (FHIR R4's vital signs profiles).

Each specific profile fixes or binds the unit code: heart and respiratory rate '/min', oxygen saturation '%',
BMI 'kg/m2', body temperature Cel or [degF], weight kg, g or [lb_av], height and head circumference cm or
[in_i], blood pressure mm[Hg].  An openEHR quantity in another UCUM unit of the same dimension (a NEWS2
sheet's '{beats}/min', a sender's 'min-1') is mapped as recorded, not converted; claiming the specific
profile for it anyway made a resource HAPI refuses, and the run dead-lettered.  Such a resource keeps the
general vitalsigns profile (any UCUM code) and drops the specific one."""
from __future__ import annotations

BASE = "http://hl7.org/fhir/StructureDefinition/"
UNITS = {"heartrate": {"/min"}, "resprate": {"/min"}, "oxygensat": {"%"}, "bmi": {"kg/m2"},
         "bodytemp": {"Cel", "[degF]"}, "bodyweight": {"kg", "g", "[lb_av]"}, "bodyheight": {"cm", "[in_i]"},
         "headcircum": {"cm", "[in_i]"}, "bp": {"mm[Hg]"}}
_BP_PARTS = {"8480-6", "8462-4"}  # systolic, diastolic: the components the bp profile fixes the unit of


def _quantities(resource: dict, profile: str) -> list[dict]:
    if profile == "bp":
        return [c["valueQuantity"] for c in resource.get("component") or [] if isinstance(c, dict)
                and isinstance(c.get("valueQuantity"), dict)
                and any(x.get("code") in _BP_PARTS for x in (c.get("code") or {}).get("coding") or [])]
    q = resource.get("valueQuantity")
    return [q] if isinstance(q, dict) else []


def fit(resource: dict) -> None:
    """Drop each specific vital-sign profile the resource claims whose unit rule its quantities break."""
    meta = resource.get("meta")
    if resource.get("resourceType") != "Observation" or not isinstance(meta, dict) or not meta.get("profile"):
        return
    meta["profile"] = [p for p in meta["profile"] if not (
        p.startswith(BASE) and p[len(BASE):] in UNITS
        and any(q.get("code") not in UNITS[p[len(BASE):]] for q in _quantities(resource, p[len(BASE):])))]
