"""Hooks (``mappingCode``) of the ACTION rows: the ISM careflow state and the mCODE surgery rule.

* ``ismTransition`` (any ACTION archetype): the rule's ``manual`` entries are the status table
  (current_state -> status one way, status -> ISM_TRANSITION the other, as in the lab status
  tables).  The table folds several states into one FHIR status, so the exact state, careflow
  step and transition also go into our ``openehr-ism-transition`` extension.  On the way back
  the extension wins only while it still folds to the resource's status: if the FHIR side
  changed the status since, the edit wins and the table's default state is written.
* ``cancerSurgery`` (ACTION.procedure.v1): applies the rule's ``manual`` entries (mCODE
  CancerRelatedSurgicalProcedure profile, surgical category) when the procedure is surgical and
  done for a cancer (see ``is_surgical`` and hooks_medication.oncology).
"""
from __future__ import annotations

import re

from . import datatypes as dt
from . import hooks_medication as med
from . import terminology
from .runtime import FWD, manual_forward, manual_reverse

ISM_EXT = terminology.SD_BASE + "openehr-ism-transition"
_ISM_PARTS = (("current_state", "currentState"), ("careflow_step", "careflowStep"), ("transition", "transition"))


def _coding(dv: dict) -> dict:
    return dt.coded_to_fhir(dv)["coding"][0]


def ism_transition(ctx, rule, onode, fobj, fmodel, direction):
    if direction == FWD:
        manual_forward(ctx, rule.manual, onode, fobj, fmodel)
        ism = onode.get("ism_transition")
        if isinstance(ism, dict) and isinstance(ism.get("current_state"), dict) \
                and ism["current_state"].get("defining_code"):
            ext = [{"url": url, "valueCoding": _coding(ism[key])} for key, url in _ISM_PARTS
                   if isinstance(ism.get(key), dict) and ism[key].get("defining_code")]
            fobj.setdefault("extension", []).append({"url": ISM_EXT, "extension": ext})
        return
    manual_reverse(ctx, rule.manual, fobj, fmodel, onode)
    ext = next((e for e in fobj.get("extension") or [] if e.get("url") == ISM_EXT), None)
    parts = {e.get("url"): e.get("valueCoding") for e in (ext or {}).get("extension") or []}
    if not parts.get("currentState"):
        return
    ism = {"_type": "ISM_TRANSITION"}
    for key, url in _ISM_PARTS:
        if parts.get(url):
            ism[key] = dt.cc_to_dv({"coding": [parts[url]]})
    probe: dict = {}
    manual_forward(ctx, rule.manual, {"ism_transition": ism}, probe, fmodel)
    if probe.get("status") == fobj.get("status"):
        onode["ism_transition"] = ism


SURGICAL_WORDS = re.compile(r"surg|ectom|otomy|ostomy|plasty|resect|excis|exzis|biops|amputat|operat|chirurg"
                            r"|lumpectom|mastectom|dissection|removal", re.I)


def is_surgical(dv) -> bool:
    """Surgical when coded SNOMED CT 387713003 (surgical procedure), German OPS chapter 5
    (operations), CPT 10004-69990 (surgery section), or when the text names a surgical method."""
    texts, codes = med.oncology.parts(dv)
    for tid, code in codes:
        if "snomed" in tid and code == "387713003":
            return True
        if "ops" in tid and code.startswith("5-"):
            return True
        if "cpt" in tid and code.isdigit() and 10004 <= int(code) <= 69990:
            return True
    return any(SURGICAL_WORDS.search(t) for t in texts)


def cancer_surgery(ctx, rule, onode, fobj, fmodel, direction):
    """ACTION.procedure.v1: name at0002 or type at0067 surgical, and reason at0014 / indication at0070
    (or the name itself) a cancer."""
    if direction != FWD:
        return
    names = med.description_values(onode, ("at0002", "at0067"))
    reasons = med.description_values(onode, ("at0070", "at0014")) + med.description_values(onode, ("at0002",))
    if any(is_surgical(v) for v in names) and any(med.oncology.is_cancer_condition(v) for v in reasons):
        med.apply_manual_once(ctx, rule, onode, fobj, fmodel)
