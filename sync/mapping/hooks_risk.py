"""Hooks for EVALUATION.health_risk.v1 <-> RiskAssessment."""
from __future__ import annotations

from . import rmpath


def risk_probability(ctx, rule, onode, fobj, fmodel, direction):
    """Risk assessment (at0003) as DV_PROPORTION <-> prediction.probabilityDecimal, a percentage
    (FHIR ras-2: at most 100).  Other forms (text, coded) go to qualitativeRisk by a plain rule; an
    exact proportion type/precision that the percentage does not show stays in the residue."""
    if direction == "openehr->fhir":
        el = next(iter(rmpath.find(onode, [rmpath.Step("items", "at0003")])), None)
        dv = (el or {}).get("value") or {}
        if dv.get("_type") == "DV_PROPORTION" and dv.get("denominator"):
            fobj["probabilityDecimal"] = round(dv["numerator"] * 100.0 / dv["denominator"], 10)
        return
    if fobj.get("probabilityDecimal") is not None:
        el = rmpath.ensure(onode, [rmpath.Step("items", "at0003", "Risk assessment")], fresh_last=True)
        el["value"] = {"_type": "DV_PROPORTION", "numerator": fobj["probabilityDecimal"], "denominator": 100.0,
                       "type": 2}
