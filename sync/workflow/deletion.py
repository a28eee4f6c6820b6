"""Deletions and corrections as the engine carries them: nothing disappears without a trace.

A deleted source record never deletes anything on the other side physically:

* centrally, every resource the deleted composition (or the dropped entry) produced
  is marked ``entered-in-error`` in the status element its type has (the FHIR
  convention: the history stays readable), with a Provenance whose activity is
  DELETE, written with If-Match in the run's one transaction;
* at a site, a central deletion (or a status changed to ``entered-in-error``)
  removes the entry it came from: a new composition version without it, or the
  composition itself deleted when no clinical entry remains (``sync.workflow.reverse``).

The pure parts live here: which element holds a type's status, whether a
resource is retired, the retire entries and the DELETE Provenance of a run.

A type whose R4 definition has no status that can say entered-in-error (R4's
AdverseEvent has none at all) is marked with the status R5 gave it, carried into
R4 by HL7's cross-version extension (package hl7.fhir.uv.xver-r5.r4:
``http://hl7.org/fhir/5.0/StructureDefinition/extension-AdverseEvent.status``), a
*modifier* extension: a reader that does not know it must not take the resource
as valid, so it never reads as live. Not a physical DELETE: HAPI refuses to
delete what the record's Condition and the sync's Provenance reference, and a
delete would leave only the history to say what was wrong.
"""
from __future__ import annotations

import copy
import functools

from fhir.resources import get_fhir_model_class as r5_model
from fhir.resources.R4B import get_fhir_model_class as r4_model

from sync.identity import provenance_id

from .result import ValidationFailed

ENTERED_IN_ERROR = "entered-in-error"

# Types whose status is a CodeableConcept: (element, its code system, an element that must then go).
# FHIR R4 con-5 / ait-1: clinicalStatus SHALL NOT be present when the verification is entered-in-error.
_CODED = {
    "Condition": ("verificationStatus", "http://terminology.hl7.org/CodeSystem/condition-ver-status", "clinicalStatus"),
    "AllergyIntolerance": ("verificationStatus",
                           "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "clinicalStatus"),
}
# Types whose status is a code that allows entered-in-error (R4), and the element's name.
_CODE = {
    "Observation": "status", "DiagnosticReport": "status", "MedicationRequest": "status", "Procedure": "status",
    "RiskAssessment": "status", "ServiceRequest": "status", "Encounter": "status", "Composition": "status",
    "Specimen": "status", "MedicationStatement": "status", "MedicationAdministration": "status",
    "Immunization": "status", "CarePlan": "status", "DocumentReference": "status", "FamilyMemberHistory": "status",
    "Goal": "lifecycleStatus", "CareTeam": "status", "Task": "status", "Communication": "status",
    "Medication": "status",  # a statement's medication details cluster (issue 18)
    "List": "status",  # a persistent list composition (issue 18)
}
# R4's status elements that are plain codes, for a type in neither table (ClinicalImpression, Consent...).
_STATUS_NAMES = ("status", "lifecycleStatus")
# HL7's cross-version extension for an element R5 added (hl7.fhir.uv.xver-r5.r4): here R5's status.
XVER_STATUS = "http://hl7.org/fhir/5.0/StructureDefinition/extension-{}.status"
# The openEHR DELETE, as R4 Provenance.activity names it.
DELETE_ACTIVITY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "DELETE"}]}


def _codes(model, name: str) -> list[str]:
    info = model.model_fields.get(name)
    return list(((info.json_schema_extra or {}) if info is not None else {}).get("enum_values") or [])


@functools.lru_cache(maxsize=None)
def marking(rtype: str | None) -> tuple[str, ...] | None:
    """How a type says entered-in-error: ("coded", element, system, element to drop), ("code", element),
    ("extension", url) or None (no way known: a deletion stops as a dead letter).

    The tables above first (R4's own status elements; the model's code lists of
    Observation, Encounter... are cut short, so they are named); then any R4 code
    element ``status``/``lifecycleStatus`` whose codes include entered-in-error;
    then, for a type without one, R5's ``status`` if its codes include it, as the
    cross-version modifier extension.
    """
    if rtype in _CODED:
        return ("coded", *_CODED[rtype])
    if rtype in _CODE:
        return ("code", _CODE[rtype])
    try:
        r4 = r4_model(rtype)
    except (KeyError, TypeError, ValueError):
        return None
    for name in _STATUS_NAMES:
        if ENTERED_IN_ERROR in _codes(r4, name):
            return ("code", name)
    if any(name in r4.model_fields for name in _STATUS_NAMES):
        return None  # an R4 status without entered-in-error: no extension may say what R4 itself cannot
    try:
        r5 = r5_model(rtype)
    except (KeyError, TypeError, ValueError):
        return None
    return ("extension", XVER_STATUS.format(rtype)) if ENTERED_IN_ERROR in _codes(r5, "status") else None


def is_retired(resource: dict | None) -> bool:
    """Whether the resource is marked entered-in-error (a deleted resource, None, counts too)."""
    if resource is None:
        return True
    how = marking(resource.get("resourceType"))
    if how is None:
        return False
    if how[0] == "coded":
        codings = (resource.get(how[1]) or {}).get("coding") or []
        return any(c.get("code") == ENTERED_IN_ERROR for c in codings if isinstance(c, dict))
    if how[0] == "extension":
        return any(e.get("url") == how[1] and e.get("valueCode") == ENTERED_IN_ERROR
                   for e in resource.get("modifierExtension") or [] if isinstance(e, dict))
    return resource.get(how[1]) == ENTERED_IN_ERROR


def retired(resource: dict) -> dict:
    """A copy of ``resource`` marked entered-in-error; ValidationFailed for a type with no way to say so."""
    rtype = resource.get("resourceType")
    out = copy.deepcopy(resource)
    how = marking(rtype)
    if how is not None and how[0] == "coded":
        _, element, system, drop = how
        out[element] = {"coding": [{"system": system, "code": ENTERED_IN_ERROR}]}
        out.pop(drop, None)
        return out
    if how is not None and how[0] == "code":
        out[how[1]] = ENTERED_IN_ERROR
        return out
    if how is not None and how[0] == "extension":
        kept = [e for e in out.get("modifierExtension") or [] if not (isinstance(e, dict) and e.get("url") == how[1])]
        out["modifierExtension"] = [*kept, {"url": how[1], "valueCode": ENTERED_IN_ERROR}]
        return out
    raise ValidationFailed("a deleted record produced a resource with no entered-in-error status",
                           rule="deletion.status", path=str(rtype))


def retire_entries(fhir, dropped: dict[str, dict]) -> tuple[list[dict], list[str]]:
    """PUT entries marking each dropped linked resource entered-in-error, If-Match its linked version.

    ``dropped``: record key -> {key, type, id, version} from the RecordLink (the
    versions the conflict check planned on). Each is read at that version: the
    body written is exactly the one the plan saw, re-marked. A resource already
    retired (or gone) centrally is left alone. Returns (entries, their record keys).
    """
    wanted = [(key, linked) for key, linked in sorted(dropped.items())
              if linked.get("version") is not None and not linked.get("gone")]
    if not wanted:
        return [], []
    bodies = fhir.vread_many([(linked["type"], linked["id"], str(linked["version"])) for _, linked in wanted])
    entries, keys = [], []
    for (key, linked), current in zip(wanted, bodies):
        if is_retired(current):
            continue
        body = retired({k: v for k, v in current.items() if k != "meta"})
        url = f"{linked['type']}/{linked['id']}"
        entries.append({"fullUrl": url, "resource": body,
                        "request": {"method": "PUT", "url": url, "ifMatch": f'W/"{linked["version"]}"'}})
        keys.append(key)
    return entries, keys


def gone_versions(fhir, linked: list[dict], versions: dict[str, str | None]) -> dict[str, dict]:
    """The linked resources physically deleted centrally, each at its deletion version and marked ``gone``.

    HAPI accepts an update after a delete when its If-Match names the deletion
    version, so a decision restoring such a resource PUTs it back on the same id,
    and fails (409) if anyone wrote it since; the last live version would always fail.
    """
    out = {}
    for r in linked:
        if versions.get(r["key"]) is None:
            latest = fhir.latest_version(r["type"], r["id"])
            if latest is not None and latest.deleted:
                out[r["key"]] = {**r, "version": latest.version_id, "gone": True}
    return out


def deletion_provenance(base: dict, targets: list[str], version_uid: str, *, site_audit=None, site: str = "") -> dict:
    """The DELETE Provenance of a source version's retired resources, at an id fixed by that version.

    ``base`` is the mapping's Provenance for the version (its agents and source
    entity); the targets are the retired resources, the activity DELETE. With
    ``site_audit`` (the site's revision of a deleted composition: its AUDIT_DETAILS),
    when the site deleted it (``occurredDateTime``) and who (a performer agent, by
    the committer's name as the CDR gives it, on behalf of the site).
    """
    body = {k: v for k, v in base.items() if k != "meta"}
    body.update(id=provenance_id(f"{version_uid}|deleted"), activity=DELETE_ACTIVITY,
                target=[{"reference": ref} for ref in targets])
    if site_audit is not None and getattr(site_audit, "committed_at", None):
        body["occurredDateTime"] = site_audit.committed_at
    if site_audit is not None and getattr(site_audit, "committer", None):
        body["agent"] = [*body.get("agent", []), {
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                 "code": "performer"}]},
            "who": {"display": site_audit.committer},
            **({"onBehalfOf": {"identifier": {"system": "urn:conflictdesk:site", "value": site}}} if site else {})}]
    return body


def provenance_entry(provenance: dict) -> dict:
    url = f"Provenance/{provenance['id']}"
    return {"fullUrl": url, "resource": provenance, "request": {"method": "PUT", "url": url}}
