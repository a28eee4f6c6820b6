"""Hooks for CLUSTER.tnm.v1 / CLUSTER.tnm-pathological.v1 <-> mCODE STU4 TNM staging Observations.

The cluster is the stage-group Observation (its model file: profile, stage grouping value); these
hooks add what a declarative rule cannot say:

* ``tnmMembers``: the T, N and M elements <-> category Observations in hasMember (each with its own
  source identifier ``<cluster path>/items[at0003]``...), focus -> the Condition holding the slot.
  Node ids are each archetype's own, as published in the CKM: tnm.v1 at0003/at0004/at0005,
  tnm-pathological.v1 at0003.1/at0004.1/at0005.1.  Templates that derived tnm-pathological from
  tnm.v1 (our first oncology OPT) used tnm.v1's ids in it: those are read too, and written back where
  a member came from.  A lone category Observation (sent without a stage group) is its cluster's
  only member.
* ``tnmMembers`` also reads the histopathological grade G (at0006, the same id in both archetypes) <->
  a histologic grade Observation (LOINC 33732-9: the code of mCODE STU4's Histologic Grade and of MII's
  grading profile), category laboratory, in hasMember too: the grade is part of the classification the
  cluster records.  A lone grade Observation (MII sends it alone, with its specimen) becomes the G of a
  pathological cluster: "in cancer specimen" is a pathologist's finding.  The G text is never translated
  into mCODE's low/intermediate/high (a 4-tier G3 is not a 3-tier G3); a coded value keeps its codes, and
  the mCODE profile is claimed only when a code of its value set is there.
* ``tnmStagingSystem``: TNM Edition at0032 <-> method (of the stage group and, copied, of every member).
* ``tnmStageGroup``: code and category of the stage group.
* ``conditionStage`` (problem_diagnosis): one Condition.stage per TNM cluster, summary and type being
  copies of the stage group's value and code (mCODE: convenience copies); a stage with a summary and a
  clinical/pathological type but no assessment becomes a cluster holding that stage grouping.

Clinical or pathological is decided from Observation.code only (``classify``: the codes of
codemaps/tnm.yml 'observables', or the generic SNOMED CT concept with MII's c/p prefix), never from
the category: TNM Observations come as laboratory, imaging, survey or without category.

What FHIR says that the archetype has no node for -- the code as sent (SNOMED CT rather than our LOINC,
a display, MII's c/p prefix extension), a category or status other than ours, the effective time,
hasMember references to resources that were not given, a stage summary/type that are not copies of the
stage group -- is kept on the node it belongs to (the cluster, or the T/N/M element) as
FEEDER_AUDIT.original_content (DV_PARSABLE, formalism application/fhir+json: the RM's place for the
original content corresponding to the openEHR content at a node) and given back as sent.  It is
written only where it differs from what the mapping itself gives, so an openEHR-born cluster never
gets one; compare_clinical and the residue ignore feeder_audit.
"""
from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path

import yaml

from . import datatypes as dt
from . import rmpath
from .identifiers import parse_source_identifier

FWD = "openehr->fhir"
MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UICC = "https://www.uicc.org/resources/tnm"
CP_PREFIX = "https://www.medizininformatik-initiative.de/fhir/ext/modul-onko/StructureDefinition/mii-ex-onko-tnm-cp-praefix"
FHIR_JSON = "application/fhir+json"
CLINICAL = "openEHR-EHR-CLUSTER.tnm.v1"
PATHOLOGICAL = "openEHR-EHR-CLUSTER.tnm-pathological.v1"
# category -> element names (clinical, pathological), mCODE profile
CATEGORIES = {
    "T": (("Primary tumour (T)", "Primary tumour (pT)"), "mcode-tnm-primary-tumor-category"),
    "N": (("Regional lymph nodes (N)", "Regional lymph nodes (pN)"), "mcode-tnm-regional-nodes-category"),
    "M": (("Distant metastasis (M)", "Distant metastasis (pM)"), "mcode-tnm-distant-metastases-category"),
}
# node ids: (tnm.v1,), (tnm-pathological.v1 as published, tnm.v1's id in templates that derived it)
NODES = {"T": (("at0003",), ("at0003.1", "at0003")), "N": (("at0004",), ("at0004.1", "at0004")),
         "M": (("at0005",), ("at0005.1", "at0005"))}
STAGE_GROUPING = ("at0031", "at0031.1")
GRADE_NODE = "at0006"  # Histopathological grade (G), in tnm.v1 and tnm-pathological.v1 alike
GRADE_NAME = "Histopathological grade (G)"
GRADE_CODE = {"coding": [{"system": LOINC, "code": "33732-9"}]}
MCODE_GRADES = frozenset({"1155708003", "1286893008", "1155707008"})  # mcode-histologic-grade-vs (SNOMED CT)


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


# observation-category of every TNM Observation we make, as in all mCODE STU4 TNM examples (pathological too)
TNM_CATEGORY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "imaging", "display": "Imaging"}]}
# a histologic grade's category, as in mCODE's Histologic Grade example and MII's grading profile
GRADE_CATEGORY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                              "code": "laboratory", "display": "Laboratory"}]}
# Observation.method is 1..1 in the mCODE TNM profiles: without a TNM Edition it says "unknown"
NO_METHOD = {"extension": [{"url": dt.DAR_EXT, "valueCode": "unknown"}]}


def cc_with(dv: dict, derived: dict | None) -> dict:
    """Source value as CodeableConcept: a coded value as it is (text + its own codings: a UICC, AJCC or
    SNOMED CT code stays the only one), a text value plus the coding derived from the text."""
    if dt.dv_type(dv) == "DV_CODED_TEXT":
        return dt.coded_to_fhir(dv)
    cc = {"text": dv.get("value", "")}
    if derived:
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


# ------------------------------------------------------------------ what an Observation is (by its code)
def _prefix(code: dict) -> str | None:
    for ext in code.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == CP_PREFIX:
            for c in (ext.get("valueCodeableConcept") or {}).get("coding") or []:
                if isinstance(c, dict) and c.get("system") == UICC:
                    return c.get("code")
    return None


def classify(obs: dict) -> tuple[str, bool] | None:
    """('stage' | 'T' | 'N' | 'M', pathological) from Observation.code alone: a LOINC or SNOMED CT code
    of codemaps/tnm.yml 'observables', or the generic SNOMED CT concept with MII's c/p prefix (c
    clinical, p pathological).  None for anything else (LOINC 'other', no prefix, not TNM)."""
    code = obs.get("code") or {}
    codes = {(c.get("system"), c.get("code")) for c in code.get("coding") or [] if isinstance(c, dict)}
    prefix = _prefix(code)
    for cat, row in codemap()["observables"].items():
        for patho in (False, True):
            if (LOINC, row["loinc"][patho]) in codes or (SNOMED, row["snomed"][patho]) in codes:
                return cat, patho
        if (SNOMED, row["generic"]) in codes and prefix in ("c", "p"):
            return cat, prefix == "p"
    return None


def is_grade(obs: dict) -> bool:
    """A histologic grade Observation: LOINC 33732-9 (whatever its category or profile)."""
    return any(isinstance(c, dict) and (c.get("system"), c.get("code")) == (LOINC, "33732-9")
               for c in (obs.get("code") or {}).get("coding") or [])


def category_of(obs: dict) -> str | None:
    got = classify(obs)
    return got[0] if got and got[0] != "stage" else None


def default_code(cat: str, pathological: bool) -> dict:
    """Our Observation.code: the LOINC code (in mCODE STU4's maximum value sets)."""
    return {"coding": [{"system": LOINC, "code": codemap()["observables"][cat]["loinc"][pathological]}]}


# ------------------------------------------------------------------ FHIR-born detail on the node
def detail(node: dict | None) -> dict:
    """The FHIR elements kept on ``node`` (see module doc); {} when there are none."""
    fa = (node or {}).get("feeder_audit") or {}
    content = fa.get("original_content") or {}
    if (fa.get("originating_system_audit") or {}).get("system_id") != "FHIR" or content.get("formalism") != FHIR_JSON:
        return {}
    try:
        got = json.loads(content.get("value") or "{}")
    except ValueError:
        return {}
    return got if isinstance(got, dict) else {}


def keep(node: dict, more: dict) -> None:
    """Add ``more`` to the FHIR elements kept on ``node``."""
    if not more:
        return
    merged = {**detail(node), **more}
    node["feeder_audit"] = {
        "_type": "FEEDER_AUDIT",
        "originating_system_audit": {"_type": "FEEDER_AUDIT_DETAILS", "system_id": "FHIR"},
        "original_content": {"_type": "DV_PARSABLE", "formalism": FHIR_JSON,
                             "value": json.dumps(merged, sort_keys=True, ensure_ascii=False)}}


def observation_detail(obs: dict, code: dict, category: dict = TNM_CATEGORY) -> dict:
    """What ``obs`` says beyond what the forward mapping gives an Observation of this code and category."""
    out = {}
    if obs.get("code") != code:
        out["code"] = obs.get("code")
    if obs.get("category") and obs["category"] != [category]:
        out["category"] = obs["category"]
    if obs.get("status") not in (None, "final"):
        out["status"] = obs["status"]
    out.update({k: v for k, v in obs.items() if k.startswith("effective")})
    return copy.deepcopy(out)


def apply_detail(obs: dict, kept: dict) -> None:
    for k, v in kept.items():
        if k in ("code", "category", "status") or k.startswith("effective"):
            obs[k] = copy.deepcopy(v)


# ------------------------------------------------------------------ hooks
def _pathological(ctx) -> bool:
    return ctx.spec.archetype == PATHOLOGICAL


def _refers_to(ref: dict, res: dict) -> bool:
    return (ref or {}).get("reference") in (f"{res.get('resourceType')}/{res.get('id')}", f"urn:uuid:{res.get('id')}")


def tnm_stage_group(ctx, rule, onode, fobj, fmodel, direction):
    """Code and category of the stage group (ours: LOINC by kind, category imaging; else as sent), and
    what the Condition's stage says beyond copies of this stage group."""
    patho, res = _pathological(ctx), ctx.resource
    if direction == FWD:
        res["code"] = default_code("stage", patho)
        res["category"] = [copy.deepcopy(TNM_CATEGORY)]
        apply_detail(res, detail(ctx.oroot))
        return
    got = classify(res)
    if got is None or got[0] != "stage":
        return  # a lone T/N/M Observation: tnmMembers reads it
    kept = observation_detail(res, default_code("stage", patho))
    parent = ctx.parent or {}
    if parent.get("resourceType") == "Condition" and parent.get("id"):  # a Condition sent along (not one we made up)
        st = next((s for s in parent.get("stage") or [] if any(_refers_to(a, res) for a in s.get("assessment") or [])),
                  None)
        if st is not None:
            if st.get("summary") != res.get("valueCodeableConcept"):
                kept["stageSummary"] = copy.deepcopy(st.get("summary"))
            if st.get("type") != res.get("code"):
                kept["stageType"] = copy.deepcopy(st.get("type"))
    keep(ctx.oroot, kept)


def _node_for(member: dict, cat: str, pathological: bool) -> str:
    """The element a member goes back to: the node it was made from, else the archetype's own id."""
    ids = NODES[cat][pathological]
    src = parse_source_identifier(member)
    m = re.search(r"/items\[([^\]]+)\](?::\d+)?$", src[2]) if src else None
    return m.group(1) if m and m.group(1) in ids else ids[0]


def _element_back(cluster: dict, obs: dict, node: str, name: str, derive, label, code: dict,
                  category: dict = TNM_CATEGORY) -> None:
    """Observation ``obs`` -> the cluster's element ``node``: its value (the coding ``derive`` gives its text
    dropped, ``label`` naming a bare code) or data-absent reason, and what it says beyond the forward mapping's
    ``code`` and ``category`` kept on the element.  The inverse of ``_element_forward``."""
    el = rmpath.ensure(cluster, [rmpath.Step("items", node, name)], fresh_last=True)
    if obs.get("valueCodeableConcept"):
        el["value"] = dv_from(obs["valueCodeableConcept"], derive, label)
    elif obs.get("dataAbsentReason"):
        el["null_flavour"] = dt.dar_to_null_flavour(obs["dataAbsentReason"])
    keep(el, observation_detail(obs, code, category))


def _member_back(cluster: dict, member: dict, cat: str, pathological: bool) -> None:
    _element_back(cluster, member, _node_for(member, cat, pathological), CATEGORIES[cat][0][pathological],
                  lambda t: category_coding(t, cat, pathological), _label_for(cat), default_code(cat, pathological))


def _grade_back(cluster: dict, grade: dict) -> None:
    _element_back(cluster, grade, GRADE_NODE, GRADE_NAME, lambda t: None, None, GRADE_CODE, GRADE_CATEGORY)


def _element_forward(ctx, el: dict, node: str, k: int, obs: dict, category: dict, derived) -> dict:
    """The Observation ``obs`` (code, profile) made from element ``el`` of the cluster: identity, focus,
    category, value (plus the coding ``derived`` gives its text) or data-absent reason, FHIR-born detail."""
    res = ctx.resource
    path = ctx.node_path + f"/items[{node}]" + (f":{k}" if k else "")
    if ctx.identify:
        ctx.identify(obs, path)
    if "focus" in res:
        obs["focus"] = copy.deepcopy(res["focus"])
    obs["category"] = [copy.deepcopy(category)]
    if el.get("value") is not None:
        dv = el["value"]
        obs["valueCodeableConcept"] = cc_with(dv, derived(dv.get("value")))
    else:
        obs["dataAbsentReason"] = dt.null_flavour_to_dar(el["null_flavour"])
    apply_detail(obs, detail(el))
    ctx.unit.resources.append(obs)
    ctx.unit.paths[id(obs)] = path
    return obs


def _member_forward(ctx, el: dict, node: str, k: int, cat: str, patho: bool) -> dict:
    obs = {"resourceType": "Observation", "meta": {"profile": [MCODE + CATEGORIES[cat][1]]}, "status": "final",
           "code": default_code(cat, patho),
           # the cluster's staging system applies to each category (mCODE: method 1..1 on T/N/M too); read
           # back from the stage group only
           "method": copy.deepcopy(ctx.resource.get("method") or NO_METHOD)}
    return _element_forward(ctx, el, node, k, obs, TNM_CATEGORY, lambda text: category_coding(text, cat, patho))


def _grade_forward(ctx, el: dict, k: int) -> dict:
    """G -> a histologic grade Observation; no method (the grading system is not the TNM edition)."""
    obs = {"resourceType": "Observation", "status": "final", "code": copy.deepcopy(GRADE_CODE)}
    obs = _element_forward(ctx, el, GRADE_NODE, k, obs, GRADE_CATEGORY, lambda text: None)
    codes = {(c.get("system"), c.get("code")) for c in (obs.get("valueCodeableConcept") or {}).get("coding") or []}
    if any((SNOMED, c) in codes for c in MCODE_GRADES):
        obs["meta"] = {"profile": [MCODE + "mcode-histologic-grade"]}
    return obs


def tnm_members(ctx, rule, onode, fobj, fmodel, direction):
    """T/N/M elements <-> category Observations in hasMember; focus -> the Condition of the slot."""
    patho, res = _pathological(ctx), ctx.resource
    if direction == FWD:
        if ctx.parent is not None and ctx.parent.get("id"):
            res["focus"] = [{"reference": f"{ctx.parent['resourceType']}/{ctx.parent['id']}"}]
        for cat in CATEGORIES:
            for node in NODES[cat][patho]:
                for k, el in enumerate(rmpath.find(ctx.oroot, [rmpath.Step("items", node)])):
                    if el.get("value") is None and el.get("null_flavour") is None:
                        continue
                    obs = _member_forward(ctx, el, node, k, cat, patho)
                    res.setdefault("hasMember", []).append({"reference": f"Observation/{obs.get('id')}"})
        for k, el in enumerate(rmpath.find(ctx.oroot, [rmpath.Step("items", GRADE_NODE)])):
            if el.get("value") is not None or el.get("null_flavour") is not None:
                obs = _grade_forward(ctx, el, k)
                res.setdefault("hasMember", []).append({"reference": f"Observation/{obs.get('id')}"})
        for ref in detail(ctx.oroot).get("hasMember") or []:  # sent, never resolved: given back as sent
            res.setdefault("hasMember", []).append(copy.deepcopy(ref))
        return
    got = classify(res)
    if got is not None and got[0] != "stage":
        _member_back(ctx.oroot, res, got[0], patho)  # a lone category Observation: the cluster's one member
        return
    if is_grade(res):
        _grade_back(ctx.oroot, res)  # a lone grade: the (pathological) cluster's G
        return
    unresolved = []
    for ref in res.get("hasMember") or []:
        member = ctx.unit.by_ref.get((ref or {}).get("reference", ""))
        if member is None:
            unresolved.append(ref)
            continue
        if is_grade(member):
            ctx.unit.used.add(id(member))
            _grade_back(ctx.oroot, member)
            continue
        mine = classify(member)
        if mine is None or mine[0] == "stage" or mine[1] != patho:
            continue  # not a T/N/M category of this kind (L, V, Pn...): the comparison reports it
        ctx.unit.used.add(id(member))
        _member_back(ctx.oroot, member, mine[0], patho)
    keep(ctx.oroot, {"hasMember": copy.deepcopy(unresolved)} if unresolved else {})


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


# ------------------------------------------------------------------ Condition.stage (problem_diagnosis)
def _cluster_of(ctx, sg: dict) -> dict | None:
    path = ctx.unit.paths.get(id(sg), "")
    if not path.startswith(ctx.node_path):
        return None
    rel = path[len(ctx.node_path):]
    return next(iter(rmpath.find(ctx.archetype, rmpath.parse(rel))), None) if rel else None


def condition_stage(ctx, rule, onode, fobj, fmodel, direction):
    """One Condition.stage per TNM cluster: summary and type are copies of its stage group's value and
    code (unless the Condition sent others: kept on the cluster), assessment -> the stage group.  Back:
    a stage with a summary and no assessment becomes a cluster holding that stage grouping, clinical or
    pathological by its type's code; without such a type it is not read (the comparison reports it)."""
    res = ctx.resource
    if direction == FWD:
        refs = [a for st in res.get("stage") or [] for a in st.get("assessment") or []]
        if not refs:
            return
        made = {f"Observation/{r.get('id')}": r for r in ctx.unit.resources if r.get("resourceType") == "Observation"}
        stages = []
        for ref in refs:
            sg = made.get(ref.get("reference"))
            kept = detail(_cluster_of(ctx, sg)) if sg else {}
            summary = kept["stageSummary"] if "stageSummary" in kept else (sg or {}).get("valueCodeableConcept")
            typ = kept["stageType"] if "stageType" in kept else (sg or {}).get("code")
            st = {"summary": copy.deepcopy(summary)} if summary else {}
            st["assessment"] = [ref]
            if typ:
                st["type"] = copy.deepcopy(typ)
            stages.append(st)
        res["stage"] = stages
        return
    for st in res.get("stage") or []:
        if st.get("assessment") or not st.get("summary"):
            continue
        got = classify({"code": st.get("type") or {}})
        if got is None or got[0] != "stage":
            continue
        patho = got[1]
        arch = PATHOLOGICAL if patho else CLINICAL
        cluster = rmpath.ensure(ctx.archetype, [rmpath.Step("data", "at0001"), rmpath.Step("items", arch)],
                                fresh_last=True)
        cluster["name"] = {"_type": "DV_TEXT",
                           "value": "TNM pathological classification" if patho else "TNM clinical classification"}
        el = rmpath.ensure(cluster, [rmpath.Step("items", STAGE_GROUPING[patho], "Stage grouping")], fresh_last=True)
        el["value"] = dt.cc_to_dv(st["summary"])
        if st.get("type") != default_code("stage", patho):
            keep(cluster, {"stageType": copy.deepcopy(st.get("type"))})
