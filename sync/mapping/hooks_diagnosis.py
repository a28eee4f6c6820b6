"""Hooks for EVALUATION.problem_diagnosis.v1 <-> Condition.

``primaryCancerProfile`` declares the mCODE STU4 Primary Cancer Condition profile when the
diagnosis is a cancer, by one documented rule (one way: the profile is derived, never read back):

* the diagnosis name (at0002), or one of its term mappings, is an ICD-10 code (any ICD-10 flavour,
  e.g. ICD-10-GM) in C00-C97 (malignant), D00-D09 (in situ) or D37-D49 (uncertain/unspecified
  behaviour); the benign block D10-D36 is excluded on purpose;
* or it is an ICD-O-3 topography-with-behaviour or SNOMED CT code from the small list below
  (general malignancy concepts and the frequent primaries; extend the list, do not guess);
* or the entry carries a TNM cluster (CLUSTER.tnm.v1 / tnm-pathological.v1), i.e. it was staged;
* and in every case only when there is a diagnosis name (Condition.code is 1..1 in the profile; an
  entry rebuilt from a lone FHIR stage group has none).
"""
from __future__ import annotations

import re

from . import datatypes as dt
from . import rmpath

PRIMARY_CANCER = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-primary-cancer-condition"
SNOMED_CANCERS = {
    "363346000",  # Malignant neoplastic disease
    "372087000",  # Primary malignant neoplasm
    "254837009",  # Malignant neoplasm of breast
    "372064008",  # Malignant neoplasm of female breast
    "408643008",  # Infiltrating duct carcinoma of breast
    "91861009",   # Acute myeloid leukemia
    "93761005",   # Primary malignant neoplasm of colon
    "254637007",  # Non-small cell lung cancer
    "399068003",  # Malignant tumor of prostate
}
_ICD = re.compile(r"^([CD])(\d{2})")
TNM_CLUSTERS = ("openEHR-EHR-CLUSTER.tnm.v1", "openEHR-EHR-CLUSTER.tnm-pathological.v1")


def _codes(dv: dict):
    if not isinstance(dv, dict):
        return
    for phrase in [dv.get("defining_code")] + [m.get("target") for m in dv.get("mappings") or []]:
        if isinstance(phrase, dict):
            yield str((phrase.get("terminology_id") or {}).get("value", "")), str(phrase.get("code_string", ""))


def is_cancer_code(terminology: str, code: str) -> bool:
    t = terminology.lower().replace("-", "").replace("_", "")
    if "icd10" in t:
        m = _ICD.match(code.strip().upper())
        if not m:
            return False
        letter, num = m.group(1), int(m.group(2))
        return letter == "C" and num <= 97 or letter == "D" and (num <= 9 or 37 <= num <= 49)
    if "snomed" in t:
        return code.strip() in SNOMED_CANCERS
    return False


def primary_cancer_profile(ctx, rule, onode, fobj, fmodel, direction):
    if direction != "openehr->fhir":
        return
    items = rmpath.find(ctx.archetype, rmpath.parse("data[at0001]/items"))
    name = next((i for i in items if i.get("archetype_node_id") == "at0002"), None)
    cancer = any(is_cancer_code(t, c) for t, c in _codes((name or {}).get("value")))
    cancer = cancer or any(i.get("archetype_node_id") in TNM_CLUSTERS for i in items)
    if cancer and name is not None and name.get("value") is not None:  # the profile requires Condition.code
        profiles = ctx.resource.setdefault("meta", {}).setdefault("profile", [])
        if PRIMARY_CANCER not in profiles:
            profiles.append(PRIMARY_CANCER)


def diagnosis_name_absent(ctx, rule, onode, fobj, fmodel, direction):
    """Problem/Diagnosis name (at0002, 1..1 in the archetype) without a value <-> Condition.code carrying
    only a data-absent-reason (null flavour <-> DAR code).  A Condition sent without a code -- or none
    at all, when a lone TNM Observation becomes a diagnosis entry -- gives a name with null flavour
    271 'no information': a declared gap, never a made-up diagnosis.  The rule's openEHR path names
    the element."""
    steps = rmpath.parse(rule.openehr)
    if direction == "openehr->fhir":
        el = next(iter(rmpath.find(ctx.archetype, steps)), None)
        if fobj.get("code") or el is None or el.get("value") is not None or el.get("null_flavour") is None:
            return
        dar = dt.null_flavour_to_dar(el["null_flavour"])["coding"][0]["code"]
        fobj["code"] = {"extension": [{"url": dt.DAR_EXT, "valueCode": dar}]}
        return
    code = fobj.get("code") or {}
    if code.get("coding") or code.get("text"):
        return
    dar = next((e.get("valueCode") for e in code.get("extension") or [] if e.get("url") == dt.DAR_EXT), None)
    el = rmpath.ensure(ctx.archetype, steps, fresh_last=True)
    el["null_flavour"] = dt.dar_to_null_flavour({"coding": [{"system": dt.DAR_SYSTEM, "code": dar}]}) if dar \
        else dt.coded_text("no information", "openehr", "271")
