"""Interpreter for model mappings: one archetype node <-> one FHIR resource, both ways.

The engine knows nothing about blood pressure or labs: it walks the rules of a
Spec (spec.py), resolves openEHR paths with rmpath.py and FHIR paths with
fhirpath.py, and converts values with datatypes.py.  Anything a rule cannot say
is a named hook (hooks.py).  Lossless round trips are not this module's job:
residue.py compares the reverse result with the source afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import datatypes as dt
from . import fhirmodel, fhirpath, rmpath
from .errors import MappingError, UnknownArchetype
from .spec import Condition, Manual, Rule, Spec, registry

FWD, REV = "openehr->fhir", "fhir->openehr"


@dataclass
class Unit:
    """What one run produces or reads: the primary resource plus referenced ones (slots)."""
    resources: list[dict] = field(default_factory=list)
    # forward: id(resource) -> node path of its source node; reverse: reference -> resource
    paths: dict[int, str] = field(default_factory=dict)
    by_ref: dict[str, dict] = field(default_factory=dict)
    used: set = field(default_factory=set)


@dataclass
class Ctx:
    spec: Spec
    direction: str
    archetype: dict
    oroot: dict
    resource: dict
    unit: Unit
    node_path: str = ""
    event: dict | None = None
    identify: object = None  # callable(resource, node_path) set by convert.py
    language: str = "en"
    parent: dict | None = None  # slot files: the resource of the entry holding the slot (focus/partOf refs)
    composition: dict | None = None  # forward only, read-only: the source composition (composer), if known


# ------------------------------------------------------------------ path helpers
def _o_base(ctx: Ctx, path: str | None, cur: dict) -> tuple[dict, list[rmpath.Step]]:
    path = (path or "").strip()
    for var, node in (("$archetype", ctx.archetype), ("$openehrRoot", ctx.oroot), ("$composition", None)):
        if path.startswith(var):
            if node is None:
                raise MappingError("$composition paths are not supported", rule=path)
            rest = path[len(var):].strip("/")
            return node, rmpath.parse(rest) if rest else []
    return cur, rmpath.parse(path) if path else []


def _f_base(ctx: Ctx, path: str | None, cur: dict, model: str) -> tuple[dict, str, str]:
    path = (path or "").strip()
    if path.startswith("$resource"):
        return ctx.resource, ctx.spec.resource, path[len("$resource"):].lstrip(".")
    if path.startswith("$fhirRoot"):
        return cur, model, path[len("$fhirRoot"):].lstrip(".")
    return cur, model, path


def _ocond(ctx: Ctx, cond: Condition, cur: dict) -> bool:
    base, steps = _o_base(ctx, cond.target_root, cur)
    nodes = rmpath.find(base, steps) if steps else [base]
    attr = rmpath.parse(cond.target_attribute) if cond.target_attribute else []
    vals = [v for n in nodes for v in (rmpath.find(n, attr) if attr else [n]) if v not in (None, "")]
    if cond.operator == "empty":
        return not vals
    if cond.operator == "not empty":
        return bool(vals)
    return any(str(v) in [str(c) for c in cond.criteria] for v in vals)


def _fcond(ctx: Ctx, cond: Condition, cur: dict, model: str) -> bool:
    base, _, rel = _f_base(ctx, cond.target_root, cur, model) if cond.target_root else (cur, model, "")
    roots = fhirpath.get_values(base, rel) if rel else [base]
    if cond.operator == "empty":
        return all(fhirpath.matches(r, cond.target_attribute, "empty", None) for r in roots)
    return any(fhirpath.matches(r, cond.target_attribute, cond.operator, cond.criteria) for r in roots)


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
    from . import hooks
    for rule in rules:
        if not rule.runs(FWD):
            continue
        if rule.mapping_code:
            hooks.get(rule.mapping_code, ctx.spec)(ctx, rule, onode, fobj, fmodel, FWD)
            continue
        if rule.openehr is None:
            _manual_fwd(ctx, rule.manual, onode, fobj, fmodel)
            continue
        obase, osteps = _o_base(ctx, rule.openehr, onode)
        matches = rmpath.find(obase, osteps) if osteps else [obase]
        if rule.openehr_condition:
            matches = [m for m in matches if _ocond(ctx, rule.openehr_condition, m)]
        fbase, fbmodel, fpath = _f_base(ctx, rule.fhir, fobj, fmodel)
        for m in matches:
            if rule.slot_archetype:
                _slot_fwd(ctx, rule, m, fbase, fbmodel, fpath)
            elif rule.type == "NONE":
                child, cmodel = (fhirpath.put(fbase, fbmodel, fpath, {}), fhirpath.model_at(fbmodel, fpath)) \
                    if fpath else (fbase, fbmodel)
                forward(ctx, rule.followed_by, m, child, cmodel)
                _manual_fwd(ctx, rule.manual, m, child, cmodel)
            else:
                got = to_fhir_value(rule.type, m, fpath)
                if got is not None:
                    fhirpath.put(fbase, fbmodel, fpath, got[1], suffix=got[0])


def _manual_fwd(ctx: Ctx, manual: list[Manual], onode: dict, fobj: dict, fmodel: str) -> None:
    for m in manual:
        if m.openehr_condition is not None:
            ok = _ocond(ctx, m.openehr_condition, onode)
        elif m.openehr:
            ok = all(v.get("value") in _o_values(ctx, v["path"], onode) for v in m.openehr)
        else:
            ok = True
        if ok:
            for f in m.fhir:
                fhirpath.put(fobj, fmodel, f["path"], rmpath.jcopy(f["value"]))


def _o_values(ctx: Ctx, path: str, onode: dict) -> list:
    base, steps = _o_base(ctx, path, onode)
    return rmpath.find(base, steps)


def _slot_fwd(ctx: Ctx, rule: Rule, cluster: dict, fbase: dict, fbmodel: str, fpath: str) -> None:
    specs = registry()
    sub = specs.get(cluster.get("archetype_node_id", ""))
    if sub is None:
        return  # an unmapped slot filler stays in the residue
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


def rmpath_of(root: dict, target: dict) -> str:
    for p, n in rmpath.walk(root):
        if n is target:
            return p
    return ""


def run_forward(spec: Spec, entry: dict, *, node_path: str, identify, language: str, composition: dict | None = None):
    """Map one entry to resources.  Returns (unit, groups): one group per hierarchy split (event),
    each a list of resources whose first item is the primary one (slot resources follow)."""
    unit = Unit()
    roots: list[tuple[dict, str]] = [(entry, "")]
    if spec.hierarchy and spec.hierarchy.get("openehr"):
        steps = rmpath.parse(spec.hierarchy["openehr"].replace("$archetype", "").strip("/"))
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
    from . import hooks
    for rule in rules:
        if not rule.runs(REV):
            continue
        if rule.mapping_code:
            hooks.get(rule.mapping_code, ctx.spec)(ctx, rule, onode, fobj, fmodel, REV)
            continue
        if rule.openehr is None:
            _manual_rev(ctx, rule.manual, fobj, fmodel, onode)
            continue
        fbase, fbmodel, fpath = _f_base(ctx, rule.fhir, fobj, fmodel)
        vals = fhirpath.get(fbase, fpath) if fpath else [(fbase, None)]
        if rule.fhir_condition:
            c = rule.fhir_condition
            vals = [(v, s) for v, s in vals if isinstance(v, dict)
                    and fhirpath.matches(v, c.target_attribute, c.operator, c.criteria)]
        obase, osteps = _o_base(ctx, rule.openehr, onode)
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
                _manual_rev(ctx, rule.manual, v, cmodel, target)
            else:
                dv = to_dv(rule.type, v, suffix)
                if dv is not None:
                    _write(obase, osteps, dv)


def _write(obase: dict, osteps: list[rmpath.Step], value) -> None:
    if not osteps:
        obase["value"] = value
        return
    last = osteps[-1]
    if last.node is None:
        parent = rmpath.ensure(obase, osteps[:-1]) if len(osteps) > 1 else obase
        parent[last.attr] = value
    else:
        rmpath.ensure(obase, osteps, fresh_last=True)["value"] = value


def _manual_rev(ctx: Ctx, manual: list[Manual], fobj: dict, fmodel: str, onode: dict) -> None:
    for m in manual:
        if m.fhir_condition is not None:
            ok = _fcond(ctx, m.fhir_condition, fobj, fmodel)
        elif m.fhir:
            ok = all(f["value"] in fhirpath.get_values(fobj, f["path"]) for f in m.fhir)
        else:
            ok = True
        if ok:
            for o in m.openehr:
                base, steps = _o_base(ctx, o["path"], onode)
                _write(base, steps, rmpath.jcopy(o["value"]))


def _slot_rev(ctx: Ctx, rule: Rule, ref: dict, obase: dict, osteps: list[rmpath.Step]) -> None:
    target = ctx.unit.by_ref.get((ref or {}).get("reference", ""))
    sub = next((s for s in registry().values() if s.archetype.endswith(rule.slot_archetype)), None)
    if target is None or sub is None:
        return
    if sub.match and not any(fhirpath.matches(target, m.target_attribute, m.operator, m.criteria)
                             for m in sub.match):
        return  # several slot rules share one FHIR element: each reads only what its file matches
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


def spec_for_archetype(archetype_id: str) -> Spec:
    s = registry().get(archetype_id)
    if s is None:
        raise UnknownArchetype("no model mapping for archetype", path=archetype_id)
    return s


def spec_for_resource(resource: dict) -> Spec | None:
    """Pick the model file that reads a FHIR resource: resource type plus any fhirConfig.match
    condition.  Entry-level files are tried before cluster files, so a specific row (a vital sign
    by its LOINC code) wins over a generic one (any laboratory Observation)."""
    specs = sorted(registry().values(), key=lambda s: (s.is_cluster, s.archetype))
    # catch-all conditions (no match, operator 'empty') are tried after every specific one
    for catch_all in (False, True):
        for s in specs:
            if s.resource != resource.get("resourceType"):
                continue
            conds = [m for m in s.match if catch_all or m.operator != "empty"]
            if (not s.match and catch_all) or any(
                    fhirpath.matches(resource, m.target_attribute, m.operator, m.criteria) for m in conds):
                return s
    return None


__all__ = ["run_forward", "run_reverse", "spec_for_archetype", "spec_for_resource", "Unit", "fhirmodel"]
