"""The small FHIRPath subset our mapping files use: dotted element paths with ``.as(Type)``.

Reading returns every value reached (lists are flattened, as in FHIRPath).  Writing creates
missing elements, and asks the R4B model (fhirmodel.py) whether an element is a list, so a
mapping file never has to say it.
"""
from __future__ import annotations

import functools
import re

from . import fhirmodel

_SPLIT = re.compile(r"\.(?![^(]*\))")


@functools.lru_cache(maxsize=4096)  # rule paths are a small fixed set: compile each once
def parse(path: str) -> tuple[tuple[str, str | None], ...]:
    """'value.as(Quantity)' -> (('value', 'Quantity'),); 'code.coding' -> (('code', None), ('coding', None))."""
    parts = [p for p in _SPLIT.split(path) if p]
    out: list[tuple[str, str | None]] = []
    for p in parts:
        if p.startswith("as(") and out:
            out[-1] = (out[-1][0], p[3:-1])
        else:
            out.append((p, None))
    return tuple(out)


def _cap(t: str) -> str:
    return t[0].upper() + t[1:]


def get(obj: dict, path: str) -> list[tuple[object, str | None]]:
    """Values at ``path``: a list of (value, choice suffix or None)."""
    cur: list[tuple[object, str | None]] = [(obj, None)]
    for name, choice in parse(path):
        nxt = []
        for node, _ in cur:
            if not isinstance(node, dict):
                continue
            if choice:
                keys = [(name + _cap(choice), _cap(choice))]
            elif name in node:
                keys = [(name, None)]
            else:
                keys = [(k, k[len(name):]) for k in node if k.startswith(name) and len(k) > len(name)
                        and k[len(name)].isupper()]
            for key, suffix in keys:
                val = node.get(key)
                if val is None:
                    continue
                for v in (val if isinstance(val, list) else [val]):
                    nxt.append((v, suffix))
        cur = nxt
    return cur


def get_values(obj: dict, path: str) -> list:
    return [v for v, _ in get(obj, path)]


def put(obj: dict, model: str, path: str, value, *, suffix: str | None = None, reuse_last: bool = False):
    """Write ``value`` at ``path`` under ``obj`` (of FHIR type ``model``).  A list element at the end
    gets the value appended; ``suffix`` names the choice type for a bare ``value[x]`` path.
    Returns the written value (the new dict when ``value`` is a dict)."""
    steps = parse(path)
    cur, cur_model = obj, model
    for i, (name, choice) in enumerate(steps):
        last = i == len(steps) - 1
        if choice:
            key = name + _cap(choice)
        elif last and suffix and name not in fhirmodel.fields(cur_model):
            key = name + _cap(suffix)
        else:
            key = name
        is_list, tname = fhirmodel.field(cur_model, key)
        if last:
            if is_list:
                lst = cur.setdefault(key, [])
                if reuse_last and lst and isinstance(value, dict) and isinstance(lst[-1], dict):
                    return lst[-1]
                lst.append(value)
            else:
                if isinstance(value, dict) and isinstance(cur.get(key), dict):
                    cur[key].update(value)
                    return cur[key]
                cur[key] = value
            return value
        if is_list:
            lst = cur.setdefault(key, [])
            if not lst:
                lst.append({})
            cur = lst[-1]
        else:
            cur = cur.setdefault(key, {})
        cur_model = tname
    return None


def model_at(model: str, path: str) -> str:
    """FHIR type name at ``path`` (choice base without .as() -> 'Element')."""
    return fhirmodel.check_path(model, path)


def token(v) -> str:
    """How a value meets a condition's criteria: a Coding as ``system|code`` (a code keeps its system:
    criteria for ``code.coding`` are written ``http://loinc.org|21908-9``), anything else as its text."""
    if isinstance(v, dict) and "code" in v:
        return f"{v.get('system') or ''}|{v.get('code')}"
    return str(v)


def matches(obj: dict, attribute: str, operator: str, criteria) -> bool:
    """FHIRconnect condition on a FHIR element: operators 'one of', 'not of' (no value is one of them;
    no value at all passes), 'empty', 'not empty'."""
    vals = [v for v in get_values(obj, attribute) if v not in (None, "", [])] if attribute else [obj]
    if operator == "empty":
        return not vals
    if operator == "not empty":
        return bool(vals)
    if operator == "one of":
        crit = {str(c) for c in (criteria if isinstance(criteria, list) else [criteria])}
        return any(token(v) in crit for v in vals)
    if operator == "not of":
        crit = {str(c) for c in (criteria if isinstance(criteria, list) else [criteria])}
        return not any(token(v) in crit for v in vals)
    raise ValueError(f"unsupported condition operator {operator!r}")
