"""What the interpreter and the hooks share: the run context and the rule primitives.

A rule's paths are resolved against the context (``$archetype``, ``$openehrRoot``, ``$resource``,
``$fhirRoot``), its conditions tested, its ``manual`` tables applied and its values written here.
The engine (engine.py) walks rules with these; hooks (hooks_*.py) use the same primitives (a
status table applied by ``ismTransition``), so neither needs the other.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import fhirpath, rmpath
from .errors import MappingError
from .spec import ANY_OF, Condition, Manual, Spec

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
def o_base(ctx: Ctx, path: str | None, cur: dict) -> tuple[dict, list[rmpath.Step]]:
    path = (path or "").strip()
    for var, node in (("$archetype", ctx.archetype), ("$openehrRoot", ctx.oroot), ("$composition", None)):
        if path.startswith(var):
            if node is None:
                raise MappingError("$composition paths are not supported", rule=path)
            rest = path[len(var):].strip("/")
            return node, rmpath.parse(rest) if rest else []
    return cur, rmpath.parse(path) if path else []


def f_base(ctx: Ctx, path: str | None, cur: dict, model: str) -> tuple[dict, str, str]:
    path = (path or "").strip()
    if path.startswith("$resource"):
        return ctx.resource, ctx.spec.resource, path[len("$resource"):].lstrip(".")
    if path.startswith("$fhirRoot"):
        return cur, model, path[len("$fhirRoot"):].lstrip(".")
    return cur, model, path


def o_condition(ctx: Ctx, cond: Condition, cur: dict) -> bool:
    base, steps = o_base(ctx, cond.target_root, cur)
    nodes = rmpath.find(base, steps) if steps else [base]
    attr = rmpath.parse(cond.target_attribute) if cond.target_attribute else []
    vals = [v for n in nodes for v in (rmpath.find(n, attr) if attr else [n]) if v not in (None, "")]
    if cond.operator == "empty":
        return not vals
    if cond.operator == "not empty":
        return bool(vals)
    hit = any(str(v) in [str(c) for c in cond.criteria] for v in vals)
    return not hit if cond.operator == "not of" else hit


def f_condition(ctx: Ctx, cond: Condition, cur: dict, model: str) -> bool:
    if cond.operator == ANY_OF:
        return any(f_condition(ctx, c, cur, model) for c in cond.criteria)
    base, _, rel = f_base(ctx, cond.target_root, cur, model) if cond.target_root else (cur, model, "")
    roots = fhirpath.get_values(base, rel) if rel else [base]
    if cond.operator == "empty":
        return all(fhirpath.matches(r, cond.target_attribute, "empty", None) for r in roots)
    return any(fhirpath.matches(r, cond.target_attribute, cond.operator, cond.criteria) for r in roots)


# ------------------------------------------------------------------ manual tables and writes
def manual_forward(ctx: Ctx, manual: list[Manual], onode: dict, fobj: dict, fmodel: str) -> None:
    for m in manual:
        if m.openehr_condition is not None:
            ok = o_condition(ctx, m.openehr_condition, onode)
        elif m.openehr:
            ok = all(v.get("value") in _o_values(ctx, v["path"], onode) for v in m.openehr)
        else:
            ok = True
        if ok:
            for f in m.fhir:
                fhirpath.put(fobj, fmodel, f["path"], rmpath.jcopy(f["value"]))


def _o_values(ctx: Ctx, path: str, onode: dict) -> list:
    base, steps = o_base(ctx, path, onode)
    return rmpath.find(base, steps)


def write(obase: dict, osteps: list[rmpath.Step], value) -> None:
    if not osteps:
        obase["value"] = value
        return
    last = osteps[-1]
    if last.node is None:
        parent = rmpath.ensure(obase, osteps[:-1]) if len(osteps) > 1 else obase
        parent[last.attr] = value
    else:
        rmpath.ensure(obase, osteps, fresh_last=True)["value"] = value


def manual_reverse(ctx: Ctx, manual: list[Manual], fobj: dict, fmodel: str, onode: dict) -> None:
    for m in manual:
        if m.fhir_condition is not None:
            ok = f_condition(ctx, m.fhir_condition, fobj, fmodel)
        elif m.fhir:
            ok = all(f["value"] in fhirpath.get_values(fobj, f["path"]) for f in m.fhir)
        else:
            ok = True
        if ok:
            for o in m.openehr:
                base, steps = o_base(ctx, o["path"], onode)
                write(base, steps, rmpath.jcopy(o["value"]))
