"""Hooks of the imaging row (issue 18): the findings of an imaging report.

* ``findingStatus``: a finding's Observation (CLUSTER.imaging_exam.v1 in the report's result) has no status of
  its own in openEHR; it takes its report's, as a laboratory panel does (one way).  Two DiagnosticReport codes
  have no Observation twin: partial (some results available) -> preliminary, its child in R4's report status
  hierarchy; appended -> amended, its parent (Observation has amended, and corrected under it).
"""
from __future__ import annotations

import re

from . import datatypes as dt
from . import rmpath
from .runtime import FWD

REPORT_TO_OBSERVATION = {"registered": "registered", "partial": "preliminary", "preliminary": "preliminary",
                         "final": "final", "amended": "amended", "corrected": "corrected", "appended": "amended",
                         "cancelled": "cancelled", "entered-in-error": "entered-in-error", "unknown": "unknown"}


def finding_status(ctx, rule, onode, fobj, fmodel, direction):
    """Observation.status (1..1) of a finding: its report's status (see module doc)."""
    if direction == FWD:
        ctx.resource["status"] = REPORT_TO_OBSERVATION.get((ctx.parent or {}).get("status"), "unknown")


# ------------------------------------------------------------------ the study: ImagingStudy
# The archetype's protocol 'Study instance identifier' at0092 is, by its own comment, "Equivalent to Study
# Instance UID (0020,000D) in DICOM and ImagingStudy.identifier in FHIR"; FHIR writes a DICOM UID as the
# identifier system urn:dicom:uid, value urn:oid:<uid> (R4 ImagingStudy.identifier comments and examples).
DICOM_UID_SYSTEM = "urn:dicom:uid"
# DICOM PS3.5 9.1: UID components of digits, no leading zero (but a lone 0), '.'-separated, at most 64 chars
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
PROTOCOL = rmpath.Step("protocol", "at0025", "Tree")
STUDY_UID = rmpath.Step("items", "at0092", "Study instance identifier")
STUDY_STATUS = rmpath.Step("items", "at0099", "Study status")
STUDY_DESCRIPTION = rmpath.Step("items", "at0105", "Study description")
EVENT_DATA = rmpath.Step("data", "at0003", "Tree")
MODALITY = rmpath.Step("items", "at0091", "Modality")
STUDY_DATE = rmpath.Step("items", "at0070", "Study date")
# study status (the archetype's list, "Equivalent to ImagingStudy.status") <-> R4 imagingstudy-status
STUDY_STATUS_CODES = {"at0100": ("Registered", "registered"), "at0101": ("Available", "available"),
                      "at0102": ("Cancelled", "cancelled"), "at0103": ("Unknown", "unknown")}


def study_uid(dv: dict | None) -> str | None:
    """The DICOM UID a Study instance identifier value holds (DV_IDENTIFIER.id or DV_TEXT, a urn:oid: prefix
    allowed), None when it is no UID: such a value names no DICOM study and makes no ImagingStudy."""
    dv = dv or {}
    raw = dv.get("id") if dv.get("_type") == "DV_IDENTIFIER" else dv.get("value") if dv.get("_type") == "DV_TEXT" \
        else None
    uid = raw.strip() if isinstance(raw, str) else ""
    uid = uid[len("urn:oid:"):] if uid.lower().startswith("urn:oid:") else uid
    return uid if len(uid) <= 64 and _UID.match(uid) else None


def _one(root: dict, *steps) -> dict | None:
    return next(iter(rmpath.find(root, list(steps))), None)


def _path_of(root: dict, node: dict) -> str:
    return next((p for p, n in rmpath.walk(root) if n is node), "")


def _events(entry: dict) -> list:
    return [e for e in (entry.get("data") or {}).get("events") or [] if isinstance(e, dict)]


def _forward_study(ctx, uid: str, path: str) -> dict:
    study = {"resourceType": "ImagingStudy"}
    if ctx.identify:
        ctx.identify(study, path)  # our source identifier first (stamp sets the list)
    study.setdefault("identifier", []).append({"use": "official", "system": DICOM_UID_SYSTEM,
                                               "value": f"urn:oid:{uid}"})
    st = (_one(ctx.archetype, PROTOCOL, STUDY_STATUS) or {}).get("value") or {}
    code = (st.get("defining_code") or {}).get("code_string") if st.get("_type") == "DV_CODED_TEXT" else None
    study["status"] = STUDY_STATUS_CODES[code][1] if code in STUDY_STATUS_CODES else "unknown"  # 1..1
    modalities = [el["value"] for el in rmpath.find(ctx.oroot, [EVENT_DATA, MODALITY])
                  if (el.get("value") or {}).get("_type") == "DV_CODED_TEXT"]
    if modalities:  # a coded modality only: a text one names no code (it stays in the residue)
        study["modality"] = [dt.coded_to_fhir({k: v for k, v in m.items() if k != "mappings"})["coding"][0]
                             for m in modalities]
    started = (_one(ctx.oroot, EVENT_DATA, STUDY_DATE) or {}).get("value") or {}
    if started.get("_type") == "DV_DATE_TIME" and started.get("value"):
        study["started"] = dt.datetime_to_fhir(started["value"])  # "Equivalent to ImagingStudy.started"
    desc = (_one(ctx.archetype, PROTOCOL, STUDY_DESCRIPTION) or {}).get("value") or {}
    if desc.get("_type") == "DV_TEXT" and desc.get("value"):
        study["description"] = desc["value"]
    ctx.unit.resources.append(study)
    ctx.unit.paths[id(study)] = path
    return study


def _reverse_study(ctx, study: dict, uid: str) -> None:
    el = rmpath.ensure(ctx.archetype, [PROTOCOL, STUDY_UID])
    el["value"] = {"_type": "DV_IDENTIFIER", "id": uid}
    status = next((at for at, (_, code) in STUDY_STATUS_CODES.items() if code == study.get("status")), None)
    if status:  # entered-in-error has no at-code: a FHIR-born one stays in the feeder audit
        rmpath.ensure(ctx.archetype, [PROTOCOL, STUDY_STATUS])["value"] = dt.coded_text(
            STUDY_STATUS_CODES[status][0], "local", status)
    if isinstance(study.get("description"), str) and study["description"]:
        rmpath.ensure(ctx.archetype, [PROTOCOL, STUDY_DESCRIPTION])["value"] = {"_type": "DV_TEXT",
                                                                               "value": study["description"]}
    for coding in study.get("modality") or []:
        if isinstance(coding, dict) and coding.get("code"):
            rmpath.ensure(ctx.oroot, [EVENT_DATA, MODALITY], fresh_last=True)["value"] = dt.cc_to_dv(
                {"coding": [coding], **({"text": coding["display"]} if coding.get("display") else {})})
    if isinstance(study.get("started"), str) and study["started"]:
        rmpath.ensure(ctx.oroot, [EVENT_DATA, STUDY_DATE])["value"] = {"_type": "DV_DATE_TIME",
                                                                        "value": study["started"]}


def dicom_study_uid(study: dict) -> str | None:
    """The Study Instance UID of an ImagingStudy: its identifier of system urn:dicom:uid (urn:oid: value)."""
    for ident in study.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == DICOM_UID_SYSTEM \
                and str(ident.get("value") or "").startswith("urn:oid:"):
            uid = study_uid({"_type": "DV_TEXT", "value": ident["value"]})
            if uid:
                return uid
    return None


def imaging_study(ctx, rule, onode, fobj, fmodel, direction):
    """Study instance identifier (protocol at0092, a DICOM Study Instance UID) <-> an ImagingStudy in
    DiagnosticReport.imagingStudy: identifier urn:dicom:uid, status <- study status at0099 (none or free text:
    unknown, 1..1), modality <- the event's coded modalities at0091, started <- study date at0070, description
    <- study description at0105.  No UID (none, or a value that is no DICOM UID): no ImagingStudy, the
    protocol stays in the residue.  An entry of several events (one report each) makes none either: the study
    is one, its modality and date are each event's (a gap, never one event's values given to another)."""
    res = ctx.resource
    if direction == FWD:
        if len(_events(ctx.archetype)) != 1:
            return
        el = _one(ctx.archetype, PROTOCOL, STUDY_UID)
        uid = study_uid((el or {}).get("value"))
        if not uid:
            return
        study = _forward_study(ctx, uid, ctx.node_path + _path_of(ctx.archetype, el))
        res.setdefault("imagingStudy", []).append({"reference": f"ImagingStudy/{study.get('id')}"})
        return
    for ref in res.get("imagingStudy") or []:
        study = ctx.unit.by_ref.get((ref or {}).get("reference", "")) if isinstance(ref, dict) else None
        uid = dicom_study_uid(study) if study and study.get("resourceType") == "ImagingStudy" else None
        if uid:
            ctx.unit.used.add(id(study))
            _reverse_study(ctx, study, uid)
            return  # the archetype holds one study: any other stays in the feeder audit / is reported
