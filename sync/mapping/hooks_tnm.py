"""Hooks for CLUSTER.tnm.v1 / tnm-pathological.v1 -> mCODE STU4 TNM staging Observations.

The cluster itself is the stage-group Observation (its model file); these hooks add what a
declarative rule cannot say: the T, N and M category Observations it fans out to (hasMember, each
with its own source identifier ``<cluster path>/items[at0003]`` etc.), ``focus`` on the Condition
holding the slot, and the staging system in ``method`` (of the stage group and, copied, of each
T/N/M member: mCODE makes method 1..1 on all four; no TNM Edition -> a data-absent-reason method).  Category and staging-system values keep
the source text in CodeableConcept.text and any source coding; the SNOMED CT coding derived from
``codemaps/tnm.yml`` is added, and removed again on the way back, so both directions are exact.
"""
from __future__ import annotations

import copy
import functools
import re
from pathlib import Path

import yaml

from . import datatypes as dt
from . import rmpath

FWD = "openehr->fhir"
MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
# category -> at-code, element name (clinical, pathological), profile, LOINC (clinical, pathological, other),
# SNOMED observables seen in the wild (cX category, pX category)
CATEGORIES = {
    "T": ("at0003", ("Primary tumour (T)", "Primary tumour (pT)"), "mcode-tnm-primary-tumor-category",
          ("21905-5", "21899-0", "21911-3"), ("399504009", "384625004")),
    "N": ("at0004", ("Regional lymph nodes (N)", "Regional lymph nodes (pN)"), "mcode-tnm-regional-nodes-category",
          ("21906-3", "21900-6", "21912-1"), ("399534004", "371494008")),
    "M": ("at0005", ("Distant metastasis (M)", "Distant metastasis (pM)"), "mcode-tnm-distant-metastases-category",
          ("21907-1", "21901-4", "21913-9"), ("399387003", "371497001")),
}


@functools.lru_cache(maxsize=1)
def codemap() -> dict:
    return yaml.safe_load((Path(__file__).parent / "codemaps" / "tnm.yml").read_text(encoding="utf-8"))


def category_key(text: str | None, cat: str, pathological: bool) -> str | None:
    """'cT2' / 'T2' / 'ypN1a' -> 'cT2' / 'pN1a' (c/p kept, y/r/a dropped); None if not a cat category."""
    t = re.sub(r"\s+", "", text or "")
    t = re.sub(r"^[yra]+(?=[cp]?" + cat + ")", "", t)
    m = re.match(r"^([cp]?)(" + cat + r"[0-9A-Za-z()]*)$", t)
    if not m:
        return None
    return (m.group(1) or ("p" if pathological else "c")) + m.group(2)


def category_coding(text: str | None, cat: str, pathological: bool) -> dict | None:
    key = category_key(text, cat, pathological)
    code = codemap()[cat].get(key) if key else None
    return {"system": SNOMED, "code": code, "display": f"American Joint Committee on Cancer {key}"} if code else None


def method_coding(text: str | None) -> dict | None:
    for row in codemap()["method"]:
        if text and re.search(row["pattern"], text, re.I):
            return {"system": row.get("system", SNOMED), "code": row["code"], "display": row["display"]}
    return None


# observation-category of every TNM Observation, as in all mCODE STU4 TNM examples (pathological too)
TNM_CATEGORY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "imaging", "display": "Imaging"}]}
# Observation.method is 1..1 in the mCODE TNM profiles: without a TNM Edition it says "unknown"
NO_METHOD = {"extension": [{"url": dt.DAR_EXT, "valueCode": "unknown"}]}


def cc_with(dv: dict, derived: dict | None) -> dict:
    """Source value as CodeableConcept (text + its own codings) plus the derived coding."""
    cc = dt.coded_to_fhir(dv) if dt.dv_type(dv) == "DV_CODED_TEXT" else {"text": dv.get("value", "")}
    if derived and derived not in (cc.get("coding") or []):
        cc.setdefault("coding", []).append(derived)
    return cc


def dv_from(cc: dict, derive, reverse_key=None) -> dict:
    """Inverse of cc_with: drop the coding we would derive from the text, keep everything else."""
    codings = list(cc.get("coding") or [])
    text = cc.get("text")
    if text:
        d = derive(text)
        codings = [c for c in codings if c != d]
        return dt.cc_to_dv({**cc, "coding": codings}) if codings else {"_type": "DV_TEXT", "value": text}
    if codings and not codings[0].get("display") and reverse_key:
        label = reverse_key(codings[0])
        if label:
            return dt.cc_to_dv({**cc, "text": label})
    return dt.cc_to_dv(cc)


def _label_for(cat: str):
    def find(coding: dict) -> str | None:
        if coding.get("system") != SNOMED:
            return None
        return next((k for k, v in codemap()[cat].items() if v == coding.get("code")), None)
    return find


def category_of(obs: dict) -> str | None:
    codes = {c.get("code") for c in (obs.get("code") or {}).get("coding") or []}
    for cat, (_, _, profile, loincs, snomeds) in CATEGORIES.items():
        if codes & (set(loincs) | set(snomeds)) or MCODE + profile in (obs.get("meta") or {}).get("profile", []):
            return cat
    return None


def _pathological(ctx) -> bool:
    return "pathological" in ctx.spec.archetype


def tnm_members(ctx, rule, onode, fobj, fmodel, direction):
    """T/N/M elements <-> category Observations in hasMember; focus -> the Condition of the slot."""
    patho = _pathological(ctx)
    res = ctx.resource
    if direction == FWD:
        if ctx.parent is not None and ctx.parent.get("id"):
            res["focus"] = [{"reference": f"{ctx.parent['resourceType']}/{ctx.parent['id']}"}]
        for cat, (node, _, profile, loincs, _) in CATEGORIES.items():
            for k, el in enumerate(rmpath.find(ctx.oroot, [rmpath.Step("items", node)])):
                if el.get("value") is None and el.get("null_flavour") is None:
                    continue
                obs = {"resourceType": "Observation", "meta": {"profile": [MCODE + profile]}, "status": "final",
                       "code": {"coding": [{"system": LOINC, "code": loincs[1 if patho else 0]}]}}
                path = ctx.node_path + f"/items[{node}]" + (f":{k}" if k else "")
                if ctx.identify:
                    ctx.identify(obs, path)
                if "focus" in res:
                    obs["focus"] = copy.deepcopy(res["focus"])
                # the cluster's staging system applies to each category (mCODE: method 1..1 on T/N/M too);
                # read back from the stage group only
                obs["category"] = [copy.deepcopy(TNM_CATEGORY)]
                obs["method"] = copy.deepcopy(res.get("method") or NO_METHOD)
                if el.get("value") is not None:
                    dv = el["value"]
                    obs["valueCodeableConcept"] = cc_with(dv, category_coding(dv.get("value"), cat, patho))
                else:
                    obs["dataAbsentReason"] = dt.null_flavour_to_dar(el["null_flavour"])
                ctx.unit.resources.append(obs)
                ctx.unit.paths[id(obs)] = path
                res.setdefault("hasMember", []).append({"reference": f"Observation/{obs.get('id')}"})
        return
    for ref in res.get("hasMember") or []:
        member = ctx.unit.by_ref.get((ref or {}).get("reference", ""))
        cat = category_of(member) if member else None
        if cat is None:
            continue
        ctx.unit.used.add(id(member))
        node, names = CATEGORIES[cat][0], CATEGORIES[cat][1]
        el = rmpath.ensure(onode, [rmpath.Step("items", node, names[1 if patho else 0])], fresh_last=True)
        if member.get("valueCodeableConcept"):
            el["value"] = dv_from(member["valueCodeableConcept"], lambda t: category_coding(t, cat, patho),
                                  _label_for(cat))
        elif member.get("dataAbsentReason"):
            el["null_flavour"] = dt.dar_to_null_flavour(member["dataAbsentReason"])


def tnm_staging_system(ctx, rule, onode, fobj, fmodel, direction):
    """TNM Edition (at0032) <-> Observation.method: source text kept, mCODE staging-system code added."""
    res = ctx.resource
    if direction == FWD:
        el = next(iter(rmpath.find(ctx.oroot, [rmpath.Step("items", "at0032")])), None)
        if el and el.get("value") is not None:
            res["method"] = cc_with(el["value"], method_coding(el["value"].get("value")))
        else:
            res["method"] = copy.deepcopy(NO_METHOD)
        return
    if res.get("method") and set(res["method"]) - {"extension"}:  # extension only: data-absent, no value
        el = rmpath.ensure(onode, [rmpath.Step("items", "at0032", "TNM Edition")], fresh_last=True)
        el["value"] = dv_from(res["method"], method_coding)
