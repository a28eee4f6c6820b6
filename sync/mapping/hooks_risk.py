"""Hooks for EVALUATION.health_risk.v1 <-> RiskAssessment.

``riskPrediction``: the entry's one assessment <-> RiskAssessment.prediction[0], kept together.

* Health risk at0002 <-> outcome (a null-flavoured at0002, the archetype's mandatory element without a
  value, <-> no outcome); Rationale at0004 <-> rationale.
* Risk assessment at0003 (0..1) holds one value: DV_PROPORTION <-> probabilityDecimal as a
  percentage (FHIR ras-2: at most 100), text or coded <-> qualitativeRisk.  A FHIR prediction
  with both gives at0003 the probability.
* What the archetype has no element for (qualitativeRisk next to a probability, probabilityRange,
  whenRange / whenPeriod, relativeRisk, the prediction's extensions) stays with the prediction: it
  is written, as FHIR JSON (application/fhir+json, as hooks_tnm keeps FHIR-born detail), into the
  Health risk ELEMENT's ``feeder_audit.original_content`` (the RM's place for the original content a
  feeder system sent; FHIR is the feeder here), and the feeder audit's ``version_id`` is the basis: a
  hash of what at0002 and at0003 said.  Mapping forward, it rejoins the prediction while
  at0002/at0003 still say that; after an openEHR edit of either it is left out (the edit wins, as
  for the residue).  ``compare_clinical`` ignores feeder_audit, so openEHR content comparisons see
  only the archetype's elements.  Why not at0023 'Time period' for whenRange: FHIR's whenRange is
  "a period of time or an age range of the subject" and its own examples use age ranges, while
  at0023 is "the risk in the next X years": mapping either way could change the meaning.
* Only prediction[0] maps (one health risk per entry); other predictions are reported lost.
"""
from __future__ import annotations

import hashlib
import json

from . import datatypes as dt
from . import rmpath
from .fidelity import normalise_rm
from .runtime import FWD

FHIR_JSON = "application/fhir+json"
_TREE = [rmpath.Step("data", "at0001", "structure")]
_MAPPED = ("outcome", "rationale")


def _basis(risk_el: dict | None, assess_el: dict | None) -> str:
    vals = [(risk_el or {}).get("value"), (risk_el or {}).get("null_flavour"), (assess_el or {}).get("value")]
    return "sha256:" + hashlib.sha256(json.dumps(normalise_rm(vals), sort_keys=True, default=str).encode()).hexdigest()[:16]


def _el(tree: dict | None, node: str) -> dict | None:
    return next((i for i in (tree or {}).get("items") or [] if i.get("archetype_node_id") == node), None)


def _new(tree: dict, node: str, name: str) -> dict:
    el = {"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": name}, "archetype_node_id": node}
    tree.setdefault("items", []).append(el)
    return el


def _cc(dv) -> dict | None:
    if not isinstance(dv, dict) or not dv:
        return None
    t = dt.dv_type(dv)
    return dt.coded_to_fhir(dv) if t == "DV_CODED_TEXT" else dt.text_to_fhir_cc(dv) if t == "DV_TEXT" else None


def _kept(risk_el: dict | None, assess_el: dict | None) -> dict:
    """The FHIR prediction elements kept on the Health risk element, if they still apply."""
    fa = (risk_el or {}).get("feeder_audit") or {}
    oc, audit = fa.get("original_content") or {}, fa.get("originating_system_audit") or {}
    if audit.get("system_id") != "FHIR" or oc.get("formalism") != FHIR_JSON:
        return {}
    if audit.get("version_id") != _basis(risk_el, assess_el):
        return {}  # edited in openEHR since: the edit wins
    try:
        doc = json.loads(oc.get("value") or "")
    except (TypeError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def risk_prediction(ctx, rule, onode, fobj, fmodel, direction):
    """See the module doc."""
    entry = ctx.archetype
    if direction == FWD:
        tree = next(iter(rmpath.find(entry, _TREE)), None)
        risk, assess, why = _el(tree, "at0002"), _el(tree, "at0003"), _el(tree, "at0004")
        pred: dict = {}
        if _cc((risk or {}).get("value")):
            pred["outcome"] = _cc(risk["value"])
        dv = (assess or {}).get("value") or {}
        if dv.get("_type") == "DV_PROPORTION" and dv.get("denominator"):
            pred["probabilityDecimal"] = round(dv["numerator"] * 100.0 / dv["denominator"], 10)
        elif _cc(dv):
            pred["qualitativeRisk"] = _cc(dv)
        wv = (why or {}).get("value")
        if isinstance(wv, dict) and dt.dv_type(wv) == "DV_TEXT" and wv.get("value"):
            pred["rationale"] = wv["value"]
        for k, v in _kept(risk, assess).items():
            pred.setdefault(k, v)
        if pred:
            fobj.setdefault("prediction", []).append(pred)
        return
    preds = fobj.get("prediction") or []
    p = preds[0] if preds and isinstance(preds[0], dict) else None
    if not p:
        return
    tree = rmpath.ensure(entry, _TREE)
    risk = _new(tree, "at0002", "Health risk")
    if isinstance(p.get("outcome"), dict) and (p["outcome"].get("coding") or p["outcome"].get("text")):
        risk["value"] = dt.cc_to_dv(p["outcome"])
    else:
        risk["null_flavour"] = dt.coded_text("unknown", "openehr", "253")
    assess, used = None, None
    if isinstance(p.get("probabilityDecimal"), (int, float)):
        assess, used = _new(tree, "at0003", "Risk assessment"), "probabilityDecimal"
        assess["value"] = {"_type": "DV_PROPORTION", "numerator": p["probabilityDecimal"], "denominator": 100.0,
                           "type": 2}
    elif isinstance(p.get("qualitativeRisk"), dict) and (p["qualitativeRisk"].get("coding")
                                                         or p["qualitativeRisk"].get("text")):
        assess, used = _new(tree, "at0003", "Risk assessment"), "qualitativeRisk"
        assess["value"] = dt.cc_to_dv(p["qualitativeRisk"])
    if isinstance(p.get("rationale"), str) and p["rationale"]:
        _new(tree, "at0004", "Rationale")["value"] = {"_type": "DV_TEXT", "value": p["rationale"]}
    extras = {k: v for k, v in p.items() if k not in _MAPPED and k != used}
    if extras:
        risk["feeder_audit"] = {
            "_type": "FEEDER_AUDIT",
            "originating_system_audit": {"_type": "FEEDER_AUDIT_DETAILS", "system_id": "FHIR",
                                         "version_id": _basis(risk, assess)},
            "original_content": {"_type": "DV_PARSABLE", "formalism": FHIR_JSON,
                                 "value": json.dumps(extras, ensure_ascii=False, sort_keys=True)}}
