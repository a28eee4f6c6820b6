"""Interpreter for model mappings: one archetype node <-> one FHIR resource, both ways.

The engine knows nothing about blood pressure or labs: it walks the rules of a
Spec (spec.py), resolves their paths, conditions and manual tables with
runtime.py, and converts values with datatypes.py.  Anything a rule cannot say
is a named hook (hooks.py lists them).  Lossless round trips are not this
module's job: residue.py compares the reverse result with the source afterwards.
"""
from __future__ import annotations

import re

from . import datatypes as dt
from . import fhirmodel, fhirpath, hooks, rmpath
from .errors import MappingError
from .lookup import archetype_of, resource_matches
from .runtime import (FWD, REV, Ctx, Unit, f_base, f_condition, manual_forward, manual_reverse, o_base, o_condition,
                      write)
from .spec import Rule, Spec, registry


# ------------------------------------------------------------------ value conversion
def _source_dv(node):
    if isinstance(node, dict) and node.get("_type") == "ELEMENT" or (isinstance(node, dict) and "archetype_node_id"
                                                                     in node and "items" not in node):
        return node.get("value")
    return node


def to_fhir_value(typ: str, node, fpath: str) -> tuple[str | None, object] | None:
    """(choice suffix, FHIR value) for a rule type, or None when the source does not fit the rule."""
    dv = _source_dv(node)
    if dv is None:
        return None
    if typ == "NULL_FLAVOUR":
        return None, dt.null_flavour_to_dar(dv)
    if typ == "LANGUAGE":
        return None, dv.get("code_string") if isinstance(dv, dict) else dv
    if not isinstance(dv, dict):
        return ("String", dv) if typ == "STRING" else None
    t = dt.dv_type(dv)
    choice = ".as(" in fpath
    if typ == "QUANTITY" and t == "DV_QUANTITY":
        return "Quantity", dt.quantity_to_fhir(dv)
    if typ == "PROPORTION" and t == "DV_PROPORTION":
        return dt.proportion_to_fhir(dv)
    if typ == "CODEABLECONCEPT" and t == "DV_CODED_TEXT":
        return "CodeableConcept", dt.coded_to_fhir(dv)
    if typ == "CODEABLECONCEPT" and t == "DV_TEXT" and not choice:
        return "CodeableConcept", dt.text_to_fhir_cc(dv)
    if typ == "CODING" and t == "DV_CODED_TEXT":
        return "Coding", dt.coded_to_fhir(dv)["coding"][0]
    if typ == "ORDINAL" and t == "DV_ORDINAL":
        return "CodeableConcept", dt.ordinal_to_fhir(dv)
    if typ == "STRING" and t == "DV_TEXT":
        return "String", dv.get("value")
    if typ == "INTEGER" and t == "DV_COUNT":
        return "Integer", dv.get("magnitude")
    if typ == "BOOLEAN" and t == "DV_BOOLEAN":
        return "Boolean", dv.get("value")
    if typ == "DATETIME" and t in ("DV_DATE_TIME", "DV_DATE"):
        return "DateTime", dt.datetime_to_fhir(dv.get("value", ""))
    if typ == "IDENTIFIER" and t == "DV_IDENTIFIER":
        return "Identifier", dt.identifier_to_fhir(dv)
    return None


def to_dv(typ: str, value, suffix: str | None):
    if isinstance(value, dict) and value and set(value) == {"extension"}:
        return None  # a complex value carrying only extensions (a data-absent-reason) is no value
    if typ == "NULL_FLAVOUR":
        return dt.dar_to_null_flavour(value)
    if typ == "LANGUAGE":
        return dt.code_phrase("ISO_639-1", value)
    if typ == "PROPORTION":
        return dt.proportion_to_dv(suffix or "Quantity", value) if suffix in (None, "Quantity", "Ratio") else None
    if typ == "CODING":
        return dt.cc_to_dv({"coding": [value]})
    if typ == "DATETIME":
        return {"_type": "DV_DATE_TIME", "value": value}
    table = {"QUANTITY": "Quantity", "CODEABLECONCEPT": "CodeableConcept", "STRING": "String",
             "INTEGER": "Integer", "BOOLEAN": "Boolean", "IDENTIFIER": "Identifier", "ORDINAL": "CodeableConcept"}
    if typ not in table or (suffix and suffix != table[typ]):
        return None
    return dt.value_to_dv(table[typ], value, "DV_ORDINAL" if typ == "ORDINAL" else None)


# ------------------------------------------------------------------ forward
def forward(ctx: Ctx, rules: list[Rule], onode: dict, fobj: dict, fmodel: str) -> None:
    for rule in rules:
        if not rule.runs(FWD):
            continue
        if rule.mapping_code:
            hooks.get(rule.mapping_code, ctx.spec)(ctx, rule, onode, fobj, fmodel, FWD)
            continue
        if rule.openehr is None:
            manual_forward(ctx, rule.manual, onode, fobj, fmodel)
            continue
        obase, osteps = o_base(ctx, rule.openehr, onode)
        matches = rmpath.find(obase, osteps) if osteps else [obase]
        if rule.openehr_condition:
            matches = [m for m in matches if o_condition(ctx, rule.openehr_condition, m)]
        fbase, fbmodel, fpath = f_base(ctx, rule.fhir, fobj, fmodel)
        for m in matches:
            if rule.slot_archetype:
                _slot_fwd(ctx, rule, m, fbase, fbmodel, fpath)
            elif rule.type == "NONE":
                child, cmodel = (fhirpath.put(fbase, fbmodel, fpath, {}), fhirpath.model_at(fbmodel, fpath)) \
                    if fpath else (fbase, fbmodel)
                forward(ctx, rule.followed_by, m, child, cmodel)
                manual_forward(ctx, rule.manual, m, child, cmodel)
                if fpath and not child:
                    _prune_empty(fbase)  # its children mapped nothing: no element without content (ele-1)
            else:
                got = to_fhir_value(rule.type, m, fpath)
                if got is not None:
                    fhirpath.put(fbase, fbmodel, fpath, got[1], suffix=got[0])


def _slot_fwd(ctx: Ctx, rule: Rule, cluster: dict, fbase: dict, fbmodel: str, fpath: str) -> None:
    specs = registry()
    sub = specs.get(cluster.get("archetype_node_id", ""))
    if sub is None:
        return  # an unmapped slot filler stays in the residue
    if not fhirmodel.is_resource(sub.resource):
        _inline_fwd(ctx, sub, cluster, fbase, fbmodel, fpath)
        return
    path = ctx.node_path + rmpath_of(ctx.archetype, cluster)
    res = {"resourceType": sub.resource}
    sub_ctx = Ctx(spec=sub, direction=FWD, archetype=cluster, oroot=cluster, resource=res, unit=ctx.unit,
                  node_path=path, event=ctx.event, identify=ctx.identify, language=ctx.language,
                  parent=ctx.resource, composition=ctx.composition)
    if ctx.identify:
        ctx.identify(res, path)
    start = len(ctx.unit.resources)
    forward(sub_ctx, sub.rules, cluster, res, sub.resource)
    ctx.unit.resources.insert(start, res)  # before what its own hooks added (e.g. TNM members)
    ctx.unit.paths[id(res)] = path
    fhirpath.put(fbase, fbmodel, fpath, {"reference": f"{res['resourceType']}/{res.get('id')}"})


def _prune_empty(node) -> None:
    """Drop the empty objects and lists under ``node`` (and those only they filled)."""
    if isinstance(node, dict):
        for k in list(node):
            _prune_empty(node[k])
            if node[k] in ({}, []):
                del node[k]
    elif isinstance(node, list):
        for v in node:
            _prune_empty(v)
        node[:] = [v for v in node if v not in ({}, [])]


def _is_list(model: str, fpath: str) -> bool:
    parts = [p for p in re.split(r"\.(?![^(]*\))", fpath) if p]
    parent = fhirpath.model_at(model, ".".join(parts[:-1])) if len(parts) > 1 else model
    return fhirmodel.field(parent, parts[-1])[0]


def _inline_fwd(ctx: Ctx, sub: Spec, cluster: dict, fbase: dict, fbmodel: str, fpath: str) -> None:
    """A cluster file whose ``fhirConfig.resource`` is a data type (CLUSTER.dosage.v2 -> Dosage) maps the
    cluster into the element at ``with.fhir`` (a new list entry per cluster; ``$fhirRoot``: the element
    itself), not into a resource of its own.  In the cluster file ``$resource`` is that element.  A
    single-valued element takes the first cluster only: a second one stays in the residue."""
    model = fhirpath.model_at(fbmodel, fpath) if fpath else fbmodel
    if model != sub.resource:
        raise MappingError("slot element type differs from the cluster file's resource", path=sub.source,
                           rule=fpath)
    if fpath and not _is_list(fbmodel, fpath) and fhirpath.get_values(fbase, fpath):
        return
    el = fbase if not fpath else {}
    sub_ctx = Ctx(spec=sub, direction=FWD, archetype=cluster, oroot=cluster, resource=el, unit=ctx.unit,
                  node_path=ctx.node_path, event=ctx.event, identify=ctx.identify, language=ctx.language,
                  parent=ctx.parent if ctx.spec is not None and not fhirmodel.is_resource(ctx.spec.resource)
                  else ctx.resource, composition=ctx.composition)
    forward(sub_ctx, sub.rules, cluster, el, sub.resource)
    if fpath and el:
        fhirpath.put(fbase, fbmodel, fpath, el)


def _inline_rev(ctx: Ctx, sub: Spec, el, obase: dict, osteps: list[rmpath.Step]) -> None:
    """Reverse of _inline_fwd: one cluster per element value (pruned again when nothing maps back)."""
    if not isinstance(el, dict) or not el:
        return
    cluster = rmpath.ensure(obase, osteps, fresh_last=True) if osteps else obase
    if osteps:
        cluster["name"] = {"_type": "DV_TEXT", "value": sub.entry_name}
    sub_ctx = Ctx(spec=sub, direction=REV, archetype=cluster, oroot=cluster, resource=el, unit=ctx.unit,
                  event=ctx.event, language=ctx.language,
                  parent=ctx.parent if not fhirmodel.is_resource(ctx.spec.resource) else ctx.resource)
    reverse(sub_ctx, sub.rules, el, sub.resource, cluster)


def rmpath_of(root: dict, target: dict) -> str:
    for p, n in rmpath.walk(root):
        if n is target:
            return p
    return ""


def split_steps(spec: Spec) -> list[rmpath.Step]:
    """The steps of the file's ``preprocessor.hierarchy.openehr`` path (none without a hierarchy), as the
    forward split matches them: an OBSERVATION's HISTORY splits into EVERY event, whatever its node id.
    The node id the file names (the archetype's "any event") is only the one the reverse creates for a
    FHIR-born resource: named events (birth, 24-hour average, maximum...) are samples of the same data
    in time (CKM archetypes reuse the any event's data tree for them), so each maps to its own resource
    like the any event, its node id kept in the source identifier, its name in the residue."""
    if not (spec.hierarchy and spec.hierarchy.get("openehr")):
        return []
    steps = rmpath.parse(spec.hierarchy["openehr"].replace("$archetype", "").strip("/"))
    if steps and steps[-1].attr == "events":
        steps[-1] = rmpath.Step("events")
    return steps


def run_forward(spec: Spec, entry: dict, *, node_path: str, identify, language: str, composition: dict | None = None):
    """Map one entry to resources.  Returns (unit, groups): one group per hierarchy split (event, any
    node id: see split_steps), each a list of resources whose first item is the primary one (slot
    resources follow)."""
    unit = Unit()
    roots: list[tuple[dict, str]] = [(entry, "")]
    steps = split_steps(spec)
    if steps:
        roots = [(n, rmpath_of(entry, n)) for n in rmpath.find(entry, steps)]
        if not roots:
            raise MappingError("entry has no event to map", path=node_path, rule=spec.name)
    groups = []
    for oroot, rel in roots:
        res = {"resourceType": spec.resource}
        path = node_path + rel
        identify(res, path)
        ctx = Ctx(spec=spec, direction=FWD, archetype=entry, oroot=oroot, resource=res, unit=unit,
                  node_path=node_path, event=oroot if rel else None, identify=identify, language=language,
                  composition=composition)
        start = len(unit.resources)
        unit.resources.append(res)
        unit.paths[id(res)] = path
        forward(ctx, spec.rules, oroot, res, spec.resource)
        groups.append((rel, unit.resources[start:]))
    return unit, groups


# ------------------------------------------------------------------ reverse
def reverse(ctx: Ctx, rules: list[Rule], fobj: dict, fmodel: str, onode: dict) -> None:
    for rule in rules:
        if not rule.runs(REV):
            continue
        if rule.mapping_code:
            hooks.get(rule.mapping_code, ctx.spec)(ctx, rule, onode, fobj, fmodel, REV)
            continue
        if rule.openehr is None:
            manual_reverse(ctx, rule.manual, fobj, fmodel, onode)
            continue
        fbase, fbmodel, fpath = f_base(ctx, rule.fhir, fobj, fmodel)
        vals = fhirpath.get(fbase, fpath) if fpath else [(fbase, None)]
        if rule.fhir_condition:
            c = rule.fhir_condition
            if (c.target_root or "").strip() == "$resource":  # on the resource itself (its code): the rule runs or not
                vals = vals if f_condition(ctx, c, fobj, fmodel) else []
            else:
                vals = [(v, s) for v, s in vals if isinstance(v, dict)
                        and fhirpath.matches(v, c.target_attribute, c.operator, c.criteria)]
        obase, osteps = o_base(ctx, rule.openehr, onode)
        cmodel = fhirpath.model_at(fbmodel, fpath) if fpath else fbmodel
        for v, suffix in vals:
            if rule.slot_archetype:
                _slot_rev(ctx, rule, v, obase, osteps)
            elif rule.type == "NONE":
                target = rmpath.ensure(obase, osteps, fresh_last=True) if osteps else obase
                if target.get("_type") == "ELEMENT" and any((r.openehr or "").startswith("items")
                                                            for r in rule.followed_by):
                    target["_type"] = "CLUSTER"  # an at-coded cluster (e.g. risk factors) holding mapped items
                reverse(ctx, rule.followed_by, v, cmodel, target)
                manual_reverse(ctx, rule.manual, v, cmodel, target)
            else:
                dv = to_dv(rule.type, v, suffix)
                if dv is not None:
                    write(obase, osteps, dv)


def _shared_slot(spec: Spec, rule: Rule) -> bool:
    """Another slot rule of ``spec`` reads the same FHIR element (both TNM clusters <- stage.assessment).
    A slot alone on its element reads whatever is referenced there (DiagnosticReport.result: every
    result of a laboratory report is an analyte, whatever its code; claims decide loose resources)."""
    return sum(1 for r in spec.rules if r.slot_archetype and r.fhir == rule.fhir) > 1


def _slot_rev(ctx: Ctx, rule: Rule, ref: dict, obase: dict, osteps: list[rmpath.Step]) -> None:
    target = ctx.unit.by_ref.get((ref or {}).get("reference", ""))
    sub = next((s for s in registry().values() if s.archetype.endswith(rule.slot_archetype)), None)
    if sub is not None and not fhirmodel.is_resource(sub.resource):
        _inline_rev(ctx, sub, ref, obase, osteps)
        return
    if target is None or sub is None or id(target) in ctx.unit.used:
        return  # read once: a panel member listed in DiagnosticReport.result too stays in its panel
    if sub.match and _shared_slot(ctx.spec, rule) and archetype_of(target) != sub.archetype \
            and not any(resource_matches(target, m) for m in sub.match):
        return  # several slot rules share one FHIR element: each reads what its file claims or made (identifier)
    ctx.unit.used.add(id(target))
    cluster = rmpath.ensure(obase, osteps, fresh_last=True)
    cluster["name"] = {"_type": "DV_TEXT", "value": sub.entry_name}
    sub_ctx = Ctx(spec=sub, direction=REV, archetype=cluster, oroot=cluster, resource=target, unit=ctx.unit,
                  event=ctx.event, language=ctx.language, parent=ctx.resource)
    reverse(sub_ctx, sub.rules, target, sub.resource, cluster)


def entry_skeleton(spec: Spec, language: str) -> dict:
    rm_type = spec.archetype.split("-")[2].split(".")[0]
    return {"_type": rm_type, "name": {"_type": "DV_TEXT", "value": spec.entry_name},
            "archetype_node_id": spec.archetype,
            "archetype_details": {"_type": "ARCHETYPED", "archetype_id": {"_type": "ARCHETYPE_ID",
                                  "value": spec.archetype}, "rm_version": "1.0.4"},
            "language": dt.code_phrase("ISO_639-1", language),
            "encoding": dt.code_phrase("IANA_character-sets", "UTF-8"),
            "subject": {"_type": "PARTY_SELF"}}


def run_reverse(spec: Spec, resource: dict, unit: Unit, *, event_node: str | None, language: str) -> dict:
    """Rebuild one entry holding one event (or no event) from a primary resource."""
    entry = entry_skeleton(spec, language)
    oroot = entry
    if spec.hierarchy and spec.hierarchy.get("openehr"):
        steps = rmpath.parse(spec.hierarchy["openehr"].replace("$archetype", "").strip("/"))
        if event_node:
            steps[-1] = rmpath.Step(steps[-1].attr, event_node, steps[-1].name)
        oroot = rmpath.ensure(entry, steps)
        if oroot.get("_type") == "ELEMENT":  # a split on items (a family history's relative) holds items: a CLUSTER
            oroot["_type"] = "CLUSTER"
    ctx = Ctx(spec=spec, direction=REV, archetype=entry, oroot=oroot, resource=resource, unit=unit,
              event=oroot if oroot is not entry else None, language=language)
    reverse(ctx, spec.rules, resource, spec.resource, oroot)
    prune(entry)
    return entry


def prune(node: dict) -> bool:
    """Drop ELEMENTs without value or null flavour and containers left empty; True if ``node`` is empty."""
    for attr in list(node):
        val = node[attr]
        if isinstance(val, list):
            keep = [v for v in val if not (rmpath.is_locatable(v) and prune(v))]
            if keep:
                node[attr] = keep
            else:
                del node[attr]
        elif rmpath.is_locatable(val) and attr not in ("name",) and prune(val):
            del node[attr]
    t = node.get("_type")
    if t == "ELEMENT":
        return "value" not in node and "null_flavour" not in node
    if t in ("CLUSTER", "ITEM_TREE", "ITEM_LIST", "SECTION"):
        return not node.get("items")
    if t == "HISTORY":
        return not node.get("events")
    return False
