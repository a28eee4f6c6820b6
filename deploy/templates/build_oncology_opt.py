#!/usr/bin/env python3
"""Build ConflictDesk's oncology operational template (OPT 1.4) from CKM archetypes.

    .venv/bin/python deploy/templates/build_oncology_opt.py            # (re)write the v2 OPT
    .venv/bin/python deploy/templates/build_oncology_opt.py --version v1   # (re)write the v1 OPT
    .venv/bin/python deploy/templates/build_oncology_opt.py --check    # exit 1 if the file is stale
    .venv/bin/python deploy/templates/build_oncology_opt.py --out X.opt
    .venv/bin/python deploy/templates/build_oncology_opt.py --tnm-pathological ckm --out X.opt

No network, no third-party packages: only the standard library. The ADL 1.4 archetypes are read
by adl.py beside this file (its docstring says why we read ADL ourselves and what it reads); this
file writes OPT 1.4 XML (the openEHR AM 1.4 Archetype.xsd / OpenehrProfile.xsd / Template.xsd
element order) from them: C_COMPLEX_OBJECT, C_SINGLE/C_MULTIPLE_ATTRIBUTE, ARCHETYPE_SLOT (or
the archetype roots filling it), C_CODE_PHRASE, C_DV_QUANTITY, C_DV_ORDINAL, C_DV_SCALE (which
EHRbase 2.x refuses: no corpus archetype has one), C_PRIMITIVE_OBJECT, and use_node either
expanded (default, INTERNAL_REFS) or as ARCHETYPE_INTERNAL_REF.

Where does each archetype come from
-----------------------------------
* ADL 1.4 files in tests/fixtures/corpus/openehr/archetypes/ (converted here):
  EVALUATION.problem_diagnosis.v1, CLUSTER.tnm.v1, OBSERVATION.laboratory_test_result.v1,
  INSTRUCTION.medication_order.v3, ACTION.procedure.v1, EVALUATION.health_risk.v1.
* Archetypes that have no .adl in the corpus are lifted, already flattened, out of a corpus
  OPT written by others (SPLICES below): COMPOSITION.encounter.v1 and the vital signs from
  news2_encounter_vitals.opt / encounter_body_temperature_multi.opt, the analyte cluster
  from kds_lab_report.opt, therapeutic_direction.v1 + dosage.v1 from medication_order.opt.
  Those subtrees carry their source template's constraints; the only edits made are listed
  in SPLICES (template-level renames dropped, nested archetypes outside our scope removed).
* body_weight.v2 and height.v2 are in no corpus ADL and no corpus OPT, so they are NOT in
  this template (we do not invent archetype content).
* CLUSTER.tnm-pathological.v1 (TNM_PATHOLOGICAL, --tnm-pathological):
  - "derived" (the default, what the committed OPT carries): DERIVED here from tnm.v1 as an
    ADL 1.4-style specialisation: archetype id openEHR-EHR-CLUSTER.tnm-pathological.v1, the same
    node structure and at-codes as tnm.v1, with the root concept renamed ("TNM pathological
    classification", node at0000.1) and element texts naming the pathological prefix (pT, pN,
    pM). It is NOT the CKM-published archetype and says so in the OPT's description. It stays
    the default because sync/mapping (hooks_tnm.py, specs/model/cluster/tnm-pathological.v1.yml:
    T/N/M at0003/at0004/at0005, stage grouping at0031) and sync/demo/generator.py (FLAT
    .../tnm_pathological_classification/pathological_stage_grouping) read its codes and paths.
  - "ckm": the CKM archetype now in the corpus, flattened onto tnm.v1 by adl.read_adl. What
    changes in the OPT: only this archetype root. Node ids at0003.1, at0004.1, at0005.1,
    at0025.1, at0030.1, at0031.1 replace at0003/4/5/25/30/31 (texts: Primary tumour (pT), ...,
    pTNM assessment, Stage grouping); four new elements at0.1 Sentinel node (sn), at0.2
    Micrometastases (mi), at0.3 Regional lymph node ITC, at0.8 Distant metastasis ITC (codes
    at0.4-at0.7); CKM's descriptions and comments. In FLAT, .../pathological_stage_grouping
    becomes .../stage_grouping and sentinel_node_sn, micrometastases_mi,
    regional_lymph_node_itc, distant_metastasis_itc appear; every other FLAT path is unchanged
    (tests/templates/test_adl_ehrbase.py commits the oncology fixture against it).
"""
from __future__ import annotations

import argparse
import copy
import re
import sys
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CORPUS = REPO / "tests" / "fixtures" / "corpus" / "openehr"  # the vendored corpus: tests.fixtures.OPENEHR_CORPUS
ADL_DIR = CORPUS / "archetypes"
OPT_DIR = CORPUS / "templates"
OUT = HERE / "conflictdesk_oncology.v1.opt"

TEMPLATE_ID = "ConflictDesk Oncology Encounter.v1"

# v2 (issue 17): v1's content plus the oncology pathway's entries, read whole from their CKM ADL files
# (performance status, the treatment plan with its goals, referrals and orders, the administration
# that records an activity done), and the CKM tnm-pathological.v1.  v1 stays buildable (and its OPT
# committed) for compositions stored under it.
OUT_V2 = HERE / "conflictdesk_oncology.v2.opt"
TEMPLATE_ID_V2 = "ConflictDesk Oncology Encounter.v2"
V2_ENTRIES = ("OBSERVATION.ecog.v2", "OBSERVATION.karnofsky_performance_status_scale.v1",
              "INSTRUCTION.care_plan_request.v0", "EVALUATION.goal.v1", "INSTRUCTION.service_request.v1",
              "ACTION.medication.v1", "EVALUATION.adverse_reaction_risk.v2",
              "ACTION.care_plan.v0")  # the plan's careflow steps (completed, suspended...)
# Slots of those entries the template fills (and closes): entry -> slot term text -> CKM clusters.
V2_FILLERS = {"EVALUATION.adverse_reaction_risk.v2": {"Reaction event summary": ("CLUSTER.adverse_reaction_event.v1",)},
              # the radiotherapy detail (its CKM use), and the anatomical location v1 left open for
              "ACTION.procedure.v1": {"Procedure detail": ("CLUSTER.radiotherapy.v0", "CLUSTER.anatomical_location.v1")},
              # CTCAE grading of a diagnosis (its CKM use), beside the TNM clusters v1 already puts there
              "EVALUATION.problem_diagnosis.v1": {"Specific details": ("CLUSTER.ctcae.v1",)},
              # a pathology report's Gleason score and a molecular report's variants, beside the analyte v1 puts there
              "OBSERVATION.laboratory_test_result.v1": {"Test result": (
                  "CLUSTER.gleason_score.v0", "CLUSTER.lymph_node_metastases.v0", "CLUSTER.figo_staging_cancer.v1",
                  "CLUSTER.tumour_invasion.v0", "CLUSTER.tumour_resection_margins.v0",
                  "CLUSTER.anatomical_pathology_exam.v0",
                  "CLUSTER.genomic_variant_result.v1", "CLUSTER.genetic_variant_presence.v0")}}
VERSIONS = {"v1": (TEMPLATE_ID, OUT, "derived", ()), "v2": (TEMPLATE_ID_V2, OUT_V2, "ckm", V2_ENTRIES)}

NS = "http://schemas.openehr.org/v1"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XS = "http://www.w3.org/2001/XMLSchema"
XSI_TYPE = f"{{{XSI}}}type"
ET.register_namespace("", NS)
ET.register_namespace("xsi", XSI)

TNM_PATH_ID = "openEHR-EHR-CLUSTER.tnm-pathological.v1"
# Which tnm-pathological.v1 the template carries (see the module docstring): "derived" (our tnm.v1
# derivation, node ids at0003..., FLAT .../pathological_stage_grouping) or "ckm" (the CKM archetype
# of the corpus, flattened onto tnm.v1: node ids at0003.1..., .../stage_grouping). "derived" stays the
# default while sync/mapping (hooks_tnm, tnm-pathological.v1.yml) and sync/demo read its codes and paths.
TNM_PATHOLOGICAL = "derived"

if str(HERE) not in sys.path:  # adl.py sits beside this script, which also runs as a loaded file (tests)
    sys.path.insert(0, str(HERE))
from adl import (  # noqa: E402  (the ADL 1.4 reader)
    AdlError, Archetype, CAttribute, CObject, parse_interval, read_adl, resolve,
)


# RM attributes that are mandatory in the RM; everything else not constrained by ADL gets 0..1
MANDATORY_ATTRS = {
    ("OBSERVATION", "data"), ("EVALUATION", "data"), ("EVENT", "data"), ("POINT_EVENT", "data"),
    ("INTERVAL_EVENT", "data"), ("ACTIVITY", "description"), ("ACTION", "description"),
    ("ACTION", "ism_transition"), ("ISM_TRANSITION", "current_state"), ("DV_CODED_TEXT", "defining_code"),
    ("INSTRUCTION", "narrative"), ("ACTIVITY", "action_archetype_id"), ("COMPOSITION", "category"),
}


# --------------------------------------------------------------------------------------
# OPT XML writer
# --------------------------------------------------------------------------------------
def q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs) -> ET.Element:
    el = ET.SubElement(parent, q(tag), {k.replace("xsi_type", XSI_TYPE): v for k, v in attrs.items()})
    if text is not None:
        el.text = text
    return el


def interval(parent: ET.Element, tag: str, lower, upper, lower_incl=True, upper_incl=True) -> ET.Element:
    el = sub(parent, tag)
    sub(el, "lower_included", "true" if lower is not None and lower_incl else "false")
    sub(el, "upper_included", "true" if upper is not None and upper_incl else "false")
    sub(el, "lower_unbounded", "true" if lower is None else "false")
    sub(el, "upper_unbounded", "true" if upper is None else "false")
    if lower is not None:
        sub(el, "lower", str(lower))
    if upper is not None:
        sub(el, "upper", str(upper))
    return el


def _interval_of(parent: ET.Element, tag: str, text: str) -> None:
    interval(parent, tag, *parse_interval(text))


def _node_head(parent_attr: ET.Element, xsi_type: str, obj: CObject) -> ET.Element:
    ch = sub(parent_attr, "children", xsi_type=xsi_type)
    sub(ch, "rm_type_name", obj.rm_type)
    interval(ch, "occurrences", *obj.occurrences)
    sub(ch, "node_id", obj.node_id)
    return ch


_STRINGS = re.compile(r'\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_TEMPORAL = {"DURATION": "C_DURATION", "DATE": "C_DATE", "DATE_TIME": "C_DATE_TIME", "TIME": "C_TIME"}


def emit_primitive(parent_attr: ET.Element, obj: CObject) -> None:
    """C_PRIMITIVE_OBJECT; element order as in the AM 1.4 Archetype.xsd (pattern/list, range, assumed_value)."""
    ch = _node_head(parent_attr, "C_PRIMITIVE_OBJECT", obj)
    raw, assumed, t = obj.raw, obj.assumed, obj.rm_type
    if t == "BOOLEAN":
        vals = {v.strip() for v in raw.split(",")}
        if not vals <= {"true", "false"}:
            raise AdlError(f"BOOLEAN constraint {raw!r}")
        item = sub(ch, "item", xsi_type="C_BOOLEAN")
        sub(item, "true_valid", "true" if "true" in vals else "false")
        sub(item, "false_valid", "true" if "false" in vals else "false")
    elif t in ("INTEGER", "REAL"):
        item = sub(ch, "item", xsi_type="C_INTEGER" if t == "INTEGER" else "C_REAL")
        if raw.startswith("|"):
            _interval_of(item, "range", raw)
        else:
            for v in raw.split(","):
                if not re.fullmatch(r"\s*[+\-]?\d+(\.\d+)?\s*", v):
                    raise AdlError(f"{t} constraint {raw!r}")
                sub(item, "list", v.strip())
    elif t == "STRING":
        item = sub(ch, "item", xsi_type="C_STRING")
        if raw.startswith("/"):
            if not (raw.endswith("/") and len(raw) > 1):
                raise AdlError(f"STRING constraint {raw!r}")
            sub(item, "pattern", raw[1:-1])
        else:
            values = _STRINGS.findall(raw)
            if not values or _STRINGS.sub("", raw).strip():
                raise AdlError(f"STRING constraint {raw!r}")
            for v in values:
                sub(item, "list", v)
    elif t in _TEMPORAL:
        item = sub(ch, "item", xsi_type=_TEMPORAL[t])
        pattern, _, rng = ("", "", raw) if raw.startswith("|") else raw.partition("/")
        if pattern:
            sub(item, "pattern", pattern.strip())
        if rng:
            _interval_of(item, "range", rng)
    else:
        raise AdlError(f"primitive {t} {raw!r} not supported")
    if assumed is not None:
        sub(item, "assumed_value", assumed.strip('"') if t == "STRING" else assumed)


def emit_slot(parent_attr: ET.Element, obj: CObject) -> None:
    ch = _node_head(parent_attr, "ARCHETYPE_SLOT", obj)
    for tag, patterns in (("includes", obj.includes), ("excludes", obj.excludes)):
        for pattern in patterns:
            a = sub(ch, tag)
            sub(a, "string_expression", f"archetype_id/value matches {{/{pattern}/}}")
            ex = sub(a, "expression", xsi_type="EXPR_BINARY_OPERATOR")
            sub(ex, "type", "Boolean")
            sub(ex, "operator", "2007")
            sub(ex, "precedence_overridden", "false")
            left = sub(ex, "left_operand", xsi_type="EXPR_LEAF")
            sub(left, "type", "String")
            sub(left, "item", "archetype_id/value", xsi_type="xs:string")
            sub(left, "reference_type", "attribute")
            right = sub(ex, "right_operand", xsi_type="EXPR_LEAF")
            sub(right, "type", "String")
            item = sub(right, "item", xsi_type="C_STRING")
            sub(item, "pattern", pattern)
            sub(right, "reference_type", "constraint")


def _code_phrase(parent: ET.Element, tag: str, terminology: str, code: str) -> ET.Element:
    cp = sub(parent, tag)
    sub(sub(cp, "terminology_id"), "value", terminology)
    sub(cp, "code_string", code)
    return cp


def emit_ordinal(parent_attr: ET.Element, obj: CObject, arch: Archetype) -> None:
    """C_DV_ORDINAL (openEHR archetype profile) or, for real values, C_DV_SCALE: a list of
    DV_ORDINAL/DV_SCALE (value, symbol), symbol.value being the code's English term."""
    ch = _node_head(parent_attr, "C_DV_ORDINAL" if obj.kind == "ordinal" else "C_DV_SCALE", obj)

    def ordinal(tag: str, value: str, terminology: str, code: str) -> None:
        o = sub(ch, tag)
        sub(o, "value", value)
        symbol = sub(o, "symbol")
        sub(symbol, "value", arch.terms[code]["text"] if terminology == "local" else code)
        _code_phrase(symbol, "defining_code", terminology, code)

    if obj.assumed is not None:
        ordinal("assumed_value", *next(o for o in obj.ordinals if o[0] == obj.assumed))
    for value, terminology, code in obj.ordinals:
        ordinal("list", value, terminology, code)


@dataclass
class _Ctx:
    arch: Archetype
    fillers: dict  # slot node id -> archetype roots that fill (and close) it
    expand_refs: bool  # see INTERNAL_REFS


# use_node (ARCHETYPE_INTERNAL_REF) in the OPT: "expand" writes a copy of the target node in its place
# (what an operational template is for: EHRbase's web template builder, openEHR_SDK OPTParser, drops
# ARCHETYPE_INTERNAL_REF nodes, so data could not be recorded there); "keep" writes the
# ARCHETYPE_INTERNAL_REF with its archetype-relative target_path, as the AM 1.4 schema allows.
INTERNAL_REFS = "expand"


def emit_object(parent_attr: ET.Element, obj: CObject, ctx: _Ctx) -> None:
    fillers, arch = ctx.fillers, ctx.arch
    if obj.kind == "slot":
        fill = fillers.get(obj.node_id)
        if fill:  # slot filled (and closed) by archetype roots, as template designers do
            for root_el in fill:
                parent_attr.append(root_el)
            return
        emit_slot(parent_attr, obj)
        return
    if obj.kind == "primitive":
        emit_primitive(parent_attr, obj)
        return
    if obj.kind in ("ordinal", "scale"):
        emit_ordinal(parent_attr, obj, arch)
        return
    if obj.kind == "internal_ref":  # use_node: the target path is relative to the archetype root
        target = resolve(arch.definition, obj.target_path)
        occurrences = obj.occurrences or target.occurrences
        if ctx.expand_refs:
            copy_ = copy.copy(target)
            copy_.occurrences = occurrences
            emit_object(parent_attr, copy_, ctx)
            return
        ref = copy.copy(obj)
        ref.occurrences = occurrences
        ch = _node_head(parent_attr, "ARCHETYPE_INTERNAL_REF", ref)
        sub(ch, "target_path", obj.target_path)
        return
    if obj.kind == "code_phrase":
        ch = _node_head(parent_attr, "C_CODE_PHRASE", obj)
        if obj.assumed:
            _code_phrase(ch, "assumed_value", obj.terminology, obj.assumed)
        tid = sub(ch, "terminology_id")
        sub(tid, "value", obj.terminology)
        for code in obj.codes:
            sub(ch, "code_list", code)
        return
    if obj.kind == "dv_quantity":
        ch = _node_head(parent_attr, "C_DV_QUANTITY", obj)
        if obj.assumed:
            av = sub(ch, "assumed_value")
            for key in ("magnitude", "units", "precision"):
                if obj.assumed.get(key) is not None:
                    sub(av, key, str(obj.assumed[key]))
        if obj.property:
            p = sub(ch, "property")
            tid = sub(p, "terminology_id")
            sub(tid, "value", obj.property[0])
            sub(p, "code_string", obj.property[1])
        for unit in obj.units:
            li = sub(ch, "list")
            if unit["magnitude"]:
                _interval_of(li, "magnitude", unit["magnitude"])
            if unit["precision"]:
                _interval_of(li, "precision", unit["precision"])
            sub(li, "units", unit["units"])
        return
    if obj.kind != "complex":
        raise AdlError(f"no OPT form for a {obj.kind} constraint")
    ch = sub(parent_attr, "children", xsi_type="C_COMPLEX_OBJECT")
    emit_complex_body(ch, obj, ctx)


def emit_complex_body(el: ET.Element, obj: CObject, ctx: _Ctx,
                      added: dict[str, list[ET.Element]] | None = None) -> None:
    sub(el, "rm_type_name", obj.rm_type)
    interval(el, "occurrences", *obj.occurrences)
    sub(el, "node_id", obj.node_id)
    for a in obj.attributes:
        attr = sub(el, "attributes", xsi_type="C_MULTIPLE_ATTRIBUTE" if a.multiple else "C_SINGLE_ATTRIBUTE")
        sub(attr, "rm_attribute_name", a.name)
        existence = a.existence or ((1, 1) if (obj.rm_type, a.name) in MANDATORY_ATTRS else (0, 1))
        interval(attr, "existence", *existence)
        sub(attr, "match_negated", "false")
        for child in a.children:
            emit_object(attr, child, ctx)
        if a.multiple:
            lo, hi, ordered = a.cardinality or (0, None, False)
            card = sub(attr, "cardinality")
            sub(card, "is_ordered", "true" if ordered else "false")
            sub(card, "is_unique", "true" if a.unique else "false")
            interval(card, "interval", lo, hi)
    for name, roots in (added or {}).items():  # template-level content of an attribute the archetype leaves open
        attr = sub(el, "attributes", xsi_type="C_MULTIPLE_ATTRIBUTE")
        sub(attr, "rm_attribute_name", name)
        interval(attr, "existence", 0, 1)
        sub(attr, "match_negated", "false")
        for root_el in roots:
            attr.append(root_el)
        card = sub(attr, "cardinality")
        sub(card, "is_ordered", "false")
        sub(card, "is_unique", "false")
        interval(card, "interval", 0, None)


def archetype_root(arch: Archetype, occurrences=(0, None), fillers: dict | None = None,
                   node_id: str | None = None, added: dict[str, list[ET.Element]] | None = None,
                   internal_refs: str | None = None) -> ET.Element:
    """C_ARCHETYPE_ROOT for a (flat) archetype: its definition, then archetype_id, term_definitions
    (all English terms) and term_bindings. `fillers` closes slots (slot node id -> roots); `added`
    constrains attributes the archetype leaves open (e.g. a COMPOSITION's content); `internal_refs`
    "expand" or "keep" (default INTERNAL_REFS)."""
    mode = internal_refs or INTERNAL_REFS
    if mode not in ("expand", "keep"):
        raise ValueError(f"internal_refs {mode!r}: 'expand' or 'keep'")
    el = ET.Element(q("children"), {XSI_TYPE: "C_ARCHETYPE_ROOT"})
    root = copy.copy(arch.definition)
    root.occurrences = occurrences
    if node_id:
        root.node_id = node_id
    emit_complex_body(el, root, _Ctx(arch, fillers or {}, mode == "expand"), added)
    aid = sub(el, "archetype_id")
    sub(aid, "value", arch.archetype_id)
    for code in sorted(arch.terms, key=_code_key):
        td = sub(el, "term_definitions", code=code)
        term = arch.terms[code]
        for key in ["text", "description"] + sorted(k for k in term if k not in ("text", "description")):
            if key in term and isinstance(term[key], str):
                sub(td, "items", term[key], id=key)
    for terminology in sorted(arch.bindings):
        tb = sub(el, "term_bindings", terminology=terminology)
        for code in sorted(arch.bindings[terminology], key=_code_key):
            it = sub(tb, "items", code=code)
            v = sub(it, "value")
            tid = sub(v, "terminology_id")
            sub(tid, "value", terminology)
            sub(v, "code_string", arch.bindings[terminology][code])
    return el


def _code_key(code: str):
    # at0.1 and at0000.1 are numerically equal: the text breaks the tie
    return [int(x) for x in re.findall(r"\d+", code)], code


def find_element(obj: CObject, node_id: str) -> CObject | None:
    if obj.kind in ("complex",) and obj.node_id == node_id and obj.rm_type == "ELEMENT":
        return obj
    for a in obj.attributes:
        for ch in a.children:
            hit = find_element(ch, node_id)
            if hit is not None:
                return hit
    return None


def code_text_elements(arch: Archetype, coded: dict[str, str]) -> None:
    """Template-level constraint: let free-text ELEMENTs also carry a DV_CODED_TEXT from `terminology`.

    DV_CODED_TEXT is a subtype of DV_TEXT, so this only narrows what the archetype allows; it is
    what lets the FLAT format (and our FHIR mapping) carry e.g. the SNOMED CT code of a diagnosis.
    """
    for text, terminology in coded.items():
        el = find_element(arch.definition, find_slot_node(arch, text))
        value = next(a for a in el.attributes if a.name == "value")
        if not any(c.rm_type == "DV_TEXT" for c in value.children):
            raise AdlError(f"{arch.archetype_id} {text!r}: no DV_TEXT to narrow")
        cp = CObject("code_phrase", "CODE_PHRASE", terminology=terminology)
        coded_obj = CObject("complex", "DV_CODED_TEXT", attributes=[CAttribute("defining_code", False, children=[cp])])
        value.children.insert(0, coded_obj)


def find_slot_node(arch: Archetype, text: str) -> str:
    """at-code of the slot whose term text is `text` (robust to at-code renumbering)."""
    for code, term in arch.terms.items():
        if term.get("text") == text:
            return code
    raise AdlError(f"{arch.archetype_id}: no node named {text!r}")


# --------------------------------------------------------------------------------------
# Splicing flattened archetypes out of corpus OPTs
# --------------------------------------------------------------------------------------
_opt_cache: dict[str, ET.Element] = {}


def _opt(name: str) -> ET.Element:
    if name not in _opt_cache:
        _opt_cache[name] = ET.parse(OPT_DIR / name).getroot()
    return _opt_cache[name]


def _aid(el: ET.Element) -> str | None:
    v = el.find(f"{q('archetype_id')}/{q('value')}")
    return v.text if v is not None else None


def lift(opt_name: str, archetype_id: str, drop_nested: tuple[str, ...] = (), keep_names: bool = False,
         texts: dict[str, str] | None = None) -> ET.Element:
    """Deep copy of the first C_ARCHETYPE_ROOT for archetype_id in a corpus OPT."""
    root = _opt(opt_name)
    src = root.find(q("definition")) if _aid(root.find(q("definition"))) == archetype_id else None
    if src is None:
        for el in root.iter(q("children")):
            if el.get(XSI_TYPE) == "C_ARCHETYPE_ROOT" and _aid(el) == archetype_id:
                src = el
                break
    if src is None:
        raise AdlError(f"{archetype_id} not found in {opt_name}")
    el = copy.deepcopy(src)
    el.tag = q("children")
    el.set(XSI_TYPE, "C_ARCHETYPE_ROOT")
    tid = el.find(q("template_id"))
    if tid is not None:
        el.remove(tid)
    _prune(el, drop_nested, keep_names)
    if texts:
        for td in el.findall(q("term_definitions")):
            if td.get("code") in texts:
                for it in td.findall(q("items")):
                    if it.get("id") == "text":
                        it.text = texts[td.get("code")]
    _normalise(el)
    return el


def _prune(el: ET.Element, drop_nested, keep_names) -> None:
    for attr in list(el.findall(q("attributes"))):
        if not keep_names and attr.findtext(q("rm_attribute_name")) == "name":
            el.remove(attr)  # template-level rename: the archetype's own term text applies
            continue
        for ch in list(attr.findall(q("children"))):
            if ch.get(XSI_TYPE) == "C_ARCHETYPE_ROOT" and _aid(ch) in drop_nested:
                attr.remove(ch)
                continue
            _prune(ch, drop_nested, keep_names)


def _normalise(el: ET.Element) -> None:
    """Uniform whitespace and the xs prefix, so the output does not depend on the source tool."""
    for e in el.iter():
        if e.get(XSI_TYPE) == "xsd:string":
            e.set(XSI_TYPE, "xs:string")
        if len(e):
            e.text = None
        elif e.text is not None:
            e.text = e.text.strip()
        e.tail = None


def set_occurrences(el: ET.Element, lower: int, upper: int | None) -> None:
    occ = el.find(q("occurrences"))
    idx = list(el).index(occ)
    el.remove(occ)
    tmp = ET.Element("tmp")
    new = interval(tmp, "occurrences", lower, upper)
    el.insert(idx, new)


def find_node(el: ET.Element, node_id: str) -> ET.Element:
    for ch in el.iter(q("children")):
        if ch.findtext(q("node_id")) == node_id:
            return ch
    raise AdlError(f"node {node_id} not found")


def replace_slot(root_el: ET.Element, slot_node_id: str, fillers: list[ET.Element]) -> None:
    for attr in root_el.iter(q("attributes")):
        for i, ch in enumerate(list(attr)):
            if ch.tag == q("children") and ch.get(XSI_TYPE) == "ARCHETYPE_SLOT" and \
                    ch.findtext(q("node_id")) == slot_node_id:
                attr.remove(ch)
                for k, f in enumerate(fillers):
                    attr.insert(i + k, f)
                return
    raise AdlError(f"slot {slot_node_id} not found")


# --------------------------------------------------------------------------------------
# tnm-pathological.v1: derived from tnm.v1 (see module docstring)
# --------------------------------------------------------------------------------------
TNM_PATH_TEXTS = {
    "at0000": ("TNM pathological classification",
               "Pathological (post-surgical histopathological) classification and staging of a malignant "
               "tumour using the TNM system (pTNM). ConflictDesk derivation: this archetype is tnm.v1 "
               "re-identified as openEHR-EHR-CLUSTER.tnm-pathological.v1 with the same nodes and at-codes; "
               "it is not the CKM-published tnm-pathological archetype."),
    "at0003": ("Primary tumour (pT)", "Pathological classification of the primary tumour (pT)."),
    "at0004": ("Regional lymph nodes (pN)", "Pathological classification of the regional lymph nodes (pN)."),
    "at0005": ("Distant metastasis (pM)", "Pathological classification of distant metastasis (pM)."),
    "at0030": ("pTNM assessment", "The complete pathological TNM classification as a single string."),
    "at0031": ("Pathological stage grouping", "The stage group derived from the pTNM classification."),
}


def derive_tnm_pathological(tnm: Archetype) -> Archetype:
    terms = copy.deepcopy(tnm.terms)
    for code, (text, desc) in TNM_PATH_TEXTS.items():
        terms[code] = {"text": text, "description": desc}
    terms["at0000.1"] = dict(terms["at0000"])  # the specialised root node
    definition = copy.deepcopy(tnm.definition)
    return Archetype(TNM_PATH_ID, TNM_PATH_TEXTS["at0000"][0], definition, terms, dict(tnm.bindings))


# --------------------------------------------------------------------------------------
# The template
# --------------------------------------------------------------------------------------
# What is lifted from which corpus OPT, and the edits made (documented in the OPT description too).
SPLICES = {
    "openEHR-EHR-COMPOSITION.encounter.v1": ("news2_encounter_vitals.opt", "content replaced by ours"),
    "openEHR-EHR-OBSERVATION.blood_pressure.v2": ("news2_encounter_vitals.opt", ""),
    "openEHR-EHR-OBSERVATION.pulse.v2": ("news2_encounter_vitals.opt", ""),
    "openEHR-EHR-OBSERVATION.body_temperature.v2": ("encounter_body_temperature_multi.opt", ""),
    "openEHR-EHR-OBSERVATION.respiration.v2": ("news2_encounter_vitals.opt", ""),
    "openEHR-EHR-OBSERVATION.pulse_oximetry.v1": ("news2_encounter_vitals.opt", ""),
    "openEHR-EHR-CLUSTER.laboratory_test_analyte.v1": (
        "kds_lab_report.opt", "German template renames dropped (root/at0001 texts restored to the CKM English "
        "names), nested CLUSTER.device.v1 removed, template tightening of at0001 (1..*) and at0005 (1..1) "
        "relaxed to 0..*/0..1"),
    "openEHR-EHR-CLUSTER.therapeutic_direction.v1": ("medication_order.opt", "with its nested dosage.v1"),
}
# Template-level narrowing: free-text elements that may also be coded (see code_text_elements).
CODED = {
    "problem_diagnosis": {"Problem/Diagnosis name": "SNOMED-CT", "Body site": "SNOMED-CT"},
    "procedure": {"Procedure name": "SNOMED-CT", "Body site": "SNOMED-CT"},
    "medication_order": {"Medication item": "RxNorm", "Route": "SNOMED-CT"},
}
NOT_AVAILABLE = ["openEHR-EHR-OBSERVATION.body_weight.v2", "openEHR-EHR-OBSERVATION.height.v2"]


def build(tnm_pathological: str = TNM_PATHOLOGICAL, template_id: str = TEMPLATE_ID,
          entries: tuple[str, ...] = ()) -> ET.Element:
    """The oncology OPT; ``entries`` (ids without openEHR-EHR-) are appended to the content whole."""
    def a(aid: str) -> Archetype:
        return read_adl(ADL_DIR / f"{aid}.adl")

    # EVALUATION problem_diagnosis with clinical and pathological TNM in 'Specific details'
    tnm = a("openEHR-EHR-CLUSTER.tnm.v1")
    if tnm_pathological == "derived":
        tnm_path_el = archetype_root(derive_tnm_pathological(tnm), (0, 1), node_id="at0000.1")
    elif tnm_pathological == "ckm":
        tnm_path_el = archetype_root(a(TNM_PATH_ID), (0, 1))  # flattened onto tnm.v1 by read_adl
    else:
        raise ValueError(f"tnm_pathological {tnm_pathological!r}: 'derived' or 'ckm'")
    pd = a("openEHR-EHR-EVALUATION.problem_diagnosis.v1")
    code_text_elements(pd, CODED["problem_diagnosis"])
    pd_slots = slot_fillers(pd, "EVALUATION.problem_diagnosis.v1") if entries else {}
    details = find_slot_node(pd, "Specific details")
    pd_el = archetype_root(pd, fillers={
        **pd_slots, details: [archetype_root(tnm, (0, 1)), tnm_path_el, *pd_slots.get(details, [])]})

    # OBSERVATION laboratory_test_result with the analyte cluster
    analyte = lift("kds_lab_report.opt", "openEHR-EHR-CLUSTER.laboratory_test_analyte.v1",
                   drop_nested=("openEHR-EHR-CLUSTER.device.v1",),
                   texts={"at0000": "Laboratory analyte result", "at0001": "Analyte result"})
    set_occurrences(analyte, 0, None)
    set_occurrences(find_node(analyte, "at0001"), 0, None)
    set_occurrences(find_node(analyte, "at0005"), 0, 1)
    lab = a("openEHR-EHR-OBSERVATION.laboratory_test_result.v1")
    lab_slots = slot_fillers(lab, "OBSERVATION.laboratory_test_result.v1") if entries else {}
    results = find_slot_node(lab, "Test result")
    lab_el = archetype_root(lab, fillers={**lab_slots, results: [analyte, *lab_slots.get(results, [])]})

    # INSTRUCTION medication_order.v3 with therapeutic direction (+ dosage)
    direction = lift("medication_order.opt", "openEHR-EHR-CLUSTER.therapeutic_direction.v1")
    set_occurrences(direction, 0, None)
    med = a("openEHR-EHR-INSTRUCTION.medication_order.v3")
    code_text_elements(med, CODED["medication_order"])
    med_el = archetype_root(med, fillers={find_slot_node(med, "Structured dose and timing directions"): [direction]})

    proc = a("openEHR-EHR-ACTION.procedure.v1")
    code_text_elements(proc, CODED["procedure"])
    proc_el = archetype_root(proc, fillers=slot_fillers(proc, "ACTION.procedure.v1") if entries else None)
    risk_el = archetype_root(a("openEHR-EHR-EVALUATION.health_risk.v1"))

    vitals = [lift(src, aid) for aid, (src, _) in SPLICES.items() if "-OBSERVATION." in aid]
    for v in vitals:
        set_occurrences(v, 0, None)

    # COMPOSITION encounter.v1 (flattened in the NEWS2 encounter OPT); content replaced
    comp = lift("news2_encounter_vitals.opt", "openEHR-EHR-COMPOSITION.encounter.v1",
                texts={"at0000": "ConflictDesk Oncology Encounter"})
    content = next(at for at in comp.findall(q("attributes")) if at.findtext(q("rm_attribute_name")) == "content")
    for ch in content.findall(q("children")):
        content.remove(ch)
    card = content.find(q("cardinality"))
    content.remove(card)
    def whole(entry: str) -> ET.Element:
        arch = a(f"openEHR-EHR-{entry}")
        return archetype_root(arch, fillers=slot_fillers(arch, entry))

    extra = [whole(e) for e in entries]
    for el in [*vitals, lab_el, med_el, proc_el, pd_el, risk_el, *extra]:
        content.append(el)
    content.append(card)

    return wrap(comp, template_id, *oncology_description(tnm_pathological, entries))


def slot_fillers(arch: Archetype, entry: str) -> dict:
    """V2_FILLERS of ``entry`` as archetype_root fillers (slot node id -> roots read whole from the CKM ADL)."""
    return {find_slot_node(arch, text): [archetype_root(read_adl(ADL_DIR / f"openEHR-EHR-{c}.adl")) for c in clusters]
            for text, clusters in V2_FILLERS.get(entry, {}).items()}


def oncology_description(tnm_pathological: str = "derived", entries: tuple[str, ...] = ()) -> tuple[str, str]:
    purpose = ("Oncology encounter: vital signs, laboratory results (tumour markers), anticancer "
               "medication order, procedure, cancer diagnosis with clinical and pathological TNM, "
               "health risk assessment"
               + (", performance status, radiotherapy, treatment plan with goals, referrals and administrations, adverse reaction"
                  " risks, CTCAE-graded adverse events, Gleason score, lymph node metastases, FIGO stage, tumour invasion,"
                  " resection margins, genomic variants" if entries else "")
               + ". Test and mapping template of ConflictDesk.")
    tnm = (f"{TNM_PATH_ID} is derived from openEHR-EHR-CLUSTER.tnm.v1 (same nodes, pathological texts)."
           if tnm_pathological == "derived" else
           f"{TNM_PATH_ID} is the CKM archetype, flattened onto its parent openEHR-EHR-CLUSTER.tnm.v1.")
    use = ["Built by deploy/templates/build_oncology_opt.py from the CKM ADL 1.4 archetypes in the corpus.",
           "Lifted from corpus OPTs: " + "; ".join(f"{k} from {v[0]}" + (f" ({v[1]})" if v[1] else "")
                                                    for k, v in SPLICES.items()) + ".",
           tnm,
           "Template constraints: these text elements also accept DV_CODED_TEXT: "
           + "; ".join(f"{k} {t!r} ({v})" for k, m in CODED.items() for t, v in m.items()) + ".",
           "Not included (no source in the corpus): " + ", ".join(NOT_AVAILABLE) + "."]
    if entries:
        use.insert(2, "Read whole from their CKM ADL files: " + ", ".join(entries) + "; slots filled: "
                   + "; ".join(f"{e} {t!r} with {', '.join(c)}" for e, m in V2_FILLERS.items() for t, c in m.items()) + ".")
    return purpose, " ".join(use)


def wrap(comp: ET.Element, template_id: str = TEMPLATE_ID, purpose: str | None = None,
         use: str | None = None) -> ET.Element:
    """The OPT 1.4 <template> around a COMPOSITION C_ARCHETYPE_ROOT (which becomes its definition)."""
    if purpose is None or use is None:
        purpose, use = oncology_description()
    t = ET.Element(q("template"))
    t.set("xmlns:xs", XS)  # for xsi:type="xs:string" values
    lang = sub(t, "language")
    sub(sub(lang, "terminology_id"), "value", "ISO_639-1")
    sub(lang, "code_string", "en")
    d = sub(t, "description")
    sub(d, "original_author", "ConflictDesk", id="name")
    sub(d, "original_author", "ConflictDesk", id="organisation")
    sub(d, "lifecycle_state", "unmanaged")
    sub(d, "other_details", "1.0.0", id="sem_ver")
    sub(d, "other_details", "deploy/templates/build_oncology_opt.py", id="Generated By")
    det = sub(d, "details")
    lang2 = sub(det, "language")
    sub(sub(lang2, "terminology_id"), "value", "ISO_639-1")
    sub(lang2, "code_string", "en")
    sub(det, "purpose", purpose)
    sub(det, "use", use)
    uid = sub(t, "uid")
    # Stable uid: derived from the template id, so regeneration is byte-for-byte identical.
    sub(uid, "value", str(uuid.uuid5(uuid.NAMESPACE_URL, "urn:conflictdesk:opt:" + template_id)))
    tid = sub(t, "template_id")
    sub(tid, "value", template_id)
    sub(t, "concept", template_id)
    comp.tag = q("definition")
    del comp.attrib[XSI_TYPE]
    # definition: template_id goes right after archetype_id
    aid_idx = list(comp).index(comp.find(q("archetype_id")))
    tid2 = ET.Element(q("template_id"))
    sub(tid2, "value", template_id)
    comp.insert(aid_idx + 1, tid2)
    t.append(comp)
    return t


def serialise(tree: ET.Element) -> bytes:
    _normalise(tree)
    ET.indent(tree, space="    ")
    body = ET.tostring(tree, encoding="unicode", short_empty_elements=False)
    return ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + body + "\n").encode("utf-8")


def render(tnm_pathological: str = TNM_PATHOLOGICAL, version: str = "v1") -> bytes:
    """v1 with the chosen tnm-pathological (the committed v1 OPT: 'derived'); v2 as VERSIONS says."""
    template_id, _, tnm, entries = VERSIONS[version]
    return serialise(build(tnm_pathological if version == "v1" else tnm, template_id, entries))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--version", choices=sorted(VERSIONS), default="v2",
                    help="which template (default %(default)s; v1 is kept for compositions stored under it)")
    ap.add_argument("--out", type=Path, default=None, help="default: the committed OPT of --version")
    ap.add_argument("--check", action="store_true", help="fail if the committed OPT differs from a fresh build")
    ap.add_argument("--tnm-pathological", choices=("derived", "ckm"), default=TNM_PATHOLOGICAL,
                    help="which CLUSTER.tnm-pathological.v1 to carry (default %(default)s; see the docstring)")
    args = ap.parse_args(argv)
    template_id, default_out, _, _ = VERSIONS[args.version]
    args.out = args.out or default_out
    data = render(args.tnm_pathological, args.version)
    if args.check:
        same = args.out.exists() and args.out.read_bytes() == data
        print(f"{args.out}: {'up to date' if same else 'STALE'}")
        return 0 if same else 1
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data)} bytes, template_id {template_id!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
