"""The residue: what the standard FHIR elements did not carry, kept so nothing is lost.

After the engine maps an entry, we map the result back and compare it with the
source (fidelity rules).  Every difference becomes one residue item in the
``openehr-residue`` extension of the resource that owns that part of the tree:

* a node the mapping does not cover (protocol/state data, unmapped elements,
  slot fillers with no mapping) -> the whole node; an ELEMENT whose value has
  a lossless FHIR type is written as ``name`` + ``value[x]`` so FHIR readers see
  a typed value, anything else as canonical RM JSON in ``rm``;
* an attribute the reverse direction would get wrong (a renamed node, a
  local-language rubric, an at-code folded into a coarser FHIR code) -> that
  attribute, with ``basis`` = a hash of what the standard elements gave at the
  time.  On the way back the item is applied only if the standard elements
  still give that (otherwise the FHIR side has edited the value since, and the
  edit wins: the stale detail is reported, never silently re-applied);
* a node the reverse direction invents -> a removal.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from . import datatypes as dt
from . import rmpath, terminology
from .fidelity import normalise_rm, same_content, same_value
from .ucum import is_ucum

URL = terminology.SD_BASE + "openehr-residue"
_CHILD_ATTRS_SKIP = {"name"}


@dataclass
class Item:
    path: str
    attr: str  # attribute name, "*" = whole node, "-" = remove node
    value: object = None
    basis: str | None = None


def _h(v) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(normalise_rm(v), sort_keys=True,
                                                     default=str).encode()).hexdigest()[:16]


def _is_child(v) -> bool:
    if isinstance(v, list):
        return bool(v) and all(rmpath.is_locatable(x) for x in v)
    return rmpath.is_locatable(v)


def diff(original: dict, rebuilt: dict, *, norm_original: dict | None = None) -> list[Item]:
    """Residue items that turn ``rebuilt`` into ``original``.  Both trees are normalised once
    (fidelity rules; ``norm_original`` may be passed in when the caller has it) and compared node by
    node on the normalised forms; items carry copies of the raw source values."""
    no = norm_original if norm_original is not None else normalise_rm(original)
    nr = normalise_rm(rebuilt)
    o = {"": original, **rmpath.node_paths(original)}
    r = {"": rebuilt, **rmpath.node_paths(rebuilt)}
    on = {"": no, **rmpath.node_paths(no)}  # same paths: normalising keeps same-id sibling order
    rn = {"": nr, **rmpath.node_paths(nr)}
    items: list[Item] = []
    added: list[str] = []
    for path, onode in o.items():
        if any(path.startswith(a + "/") for a in added):
            continue
        if path not in r:
            if onode.get("_type") == "ELEMENT" or not any(_is_child(v) for v in onode.values()):
                items.append(Item(path, "*", rmpath.jcopy(onode)))
                added.append(path)
            else:  # a container: add its shell here, its children get their own items
                items.append(Item(path, "*", {k: rmpath.jcopy(v) for k, v in onode.items() if not _is_child(v)}))
            continue
        rnode, onorm, rnorm = r[path], on[path], rn[path]
        for attr in sorted(set(onode) | set(rnode)):
            ov, rv = onode.get(attr), rnode.get(attr)
            if attr not in _CHILD_ATTRS_SKIP and (_is_child(ov) or _is_child(rv)):
                continue
            if attr in ("uid", "feeder_audit"):
                continue
            if attr == "_type":
                if ov is not None and rv is not None and ov != rv:
                    items.append(Item(path, attr, ov, _h(rv)))
                continue
            a, b = onorm.get(attr), rnorm.get(attr)
            if not (same_content(a, b) if a is not None and b is not None else a is None and b is None):
                items.append(Item(path, attr, rmpath.jcopy(ov), _h(rv)))
    for path in r:
        if path and path not in o and not any(path.startswith(a + "/") for a in added) \
                and not any(path.startswith(p + "/") for p in r if p and p not in o and p != path):
            items.append(Item(path, "-"))
    return sorted(items, key=_order)


def _order(it: Item):
    """Residue items in path order, not in the order siblings with different node ids happen to have
    (compare_clinical ignores that order, so a round trip may change it and must not change the FHIR
    side); same-id siblings keep their index order (numeric ':k')."""
    return [(st.attr, st.node or "", st.idx or 0) for st in rmpath.parse(it.path)] if it.path else []


# ------------------------------------------------------------------ FHIR encoding
def _typed(node: dict):
    """(suffix, value) when an ELEMENT value survives value[x] exactly, else None."""
    if node.get("_type") != "ELEMENT" or "value" not in node or set(node) - {
            "_type", "name", "archetype_node_id", "value"}:
        return None
    try:
        suffix, val = dt.dv_to_value(node["value"])
        back = dt.value_to_dv(suffix, val)  # decode() has no RM type hint: DV_DURATION etc. go as rm
    except (KeyError, TypeError, AttributeError):
        return None
    return (suffix, val) if same_value(back, node["value"]) and _fhir_safe(suffix, val) else None


_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,3})?$")  # HAPI rejects longer fractions


def _fhir_safe(suffix: str, val) -> bool:
    """A typed value[x] HAPI would reject goes as ``rm`` JSON instead (exact either way)."""
    if suffix == "Quantity" and val.get("system") == terminology.UCUM:
        return is_ucum(val.get("code") or "")
    if suffix == "Time":
        return bool(_TIME.match(str(val)))
    return True


def encode(items: list[Item]) -> list[dict]:
    out = []
    for it in items:
        ext = [{"url": "path", "valueString": it.path or "/"}, {"url": "attribute", "valueString": it.attr}]
        typed = _typed(it.value) if it.attr == "*" and isinstance(it.value, dict) else None
        if typed:
            ext.append({"url": "name", "valueString": it.value["name"]["value"]})
            ext.append({"url": "value", f"value{typed[0]}": typed[1]})
        elif it.attr != "-" and it.value is not None:
            ext.append({"url": "rm", "valueString": json.dumps(it.value, ensure_ascii=False, sort_keys=True)})
        if it.basis:
            ext.append({"url": "basis", "valueString": it.basis})
        out.append({"url": URL, "extension": ext})
    return out


def decode(resource: dict) -> list[Item]:
    items = []
    for ext in resource.get("extension") or []:
        if ext.get("url") != URL:
            continue
        sub = {e["url"]: e for e in ext.get("extension") or []}
        path, attr = sub["path"]["valueString"], sub["attribute"]["valueString"]
        path = "" if path == "/" else path
        value = None
        if "rm" in sub:
            value = json.loads(sub["rm"]["valueString"])
        elif "value" in sub:
            v = sub["value"]
            key = next(k for k in v if k.startswith("value"))
            steps = rmpath.parse(path)
            value = {"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": sub["name"]["valueString"]},
                     "archetype_node_id": steps[-1].node, "value": dt.value_to_dv(key[5:], v[key])}
        items.append(Item(path, attr, value, (sub.get("basis") or {}).get("valueString")))
    return items


def strip(resource: dict) -> dict:
    """The resource without residue extensions (for comparisons and FHIR-only readers)."""
    r = dict(resource)
    ext = [e for e in r.get("extension") or [] if e.get("url") != URL]
    if ext:
        r["extension"] = ext
    else:
        r.pop("extension", None)
    return r


# ------------------------------------------------------------------ apply
def apply(entry: dict, items: list[Item]) -> list[str]:
    """Apply residue items to a rebuilt entry; returns the paths whose detail was stale."""
    stale = []
    doomed = []  # every node to remove is found first: removing ':0' would make ':1' point elsewhere
    for it in [i for i in items if i.attr == "-"]:
        steps = rmpath.parse(it.path) if it.path else []
        parent = rmpath.find(entry, steps[:-1]) if len(steps) > 1 else [entry]
        if steps and parent:
            node = rmpath.find(entry, steps)
            if node:
                doomed.append((parent[0], steps[-1].attr, node[0]))
    for parent, attr, node in doomed:
        _detach(parent, attr, node)
    for it in [i for i in items if i.attr not in ("*", "-")]:
        node = entry if not it.path else (rmpath.find(entry, rmpath.parse(it.path)) or [None])[0]
        if node is None:
            stale.append(it.path)
            continue
        if it.basis and _h(node.get(it.attr)) != it.basis:
            stale.append(f"{it.path}/{it.attr}")
            continue
        if it.value is None:
            node.pop(it.attr, None)
        else:
            node[it.attr] = rmpath.jcopy(it.value)
    for it in sorted([i for i in items if i.attr == "*"], key=lambda i: i.path.count("/")):
        steps = rmpath.parse(it.path)
        parent = rmpath.ensure(entry, steps[:-1]) if len(steps) > 1 else entry
        last = steps[-1]
        if last.attr in rmpath.LIST_ATTRS:
            parent.setdefault(last.attr, []).append(rmpath.jcopy(it.value))
        else:
            parent[last.attr] = rmpath.jcopy(it.value)
    return stale


def _detach(parent: dict, attr: str, node: dict) -> None:
    val = parent.get(attr)
    if isinstance(val, list):
        parent[attr] = [x for x in val if x is not node]
        if not parent[attr]:
            del parent[attr]
    elif val is node:
        del parent[attr]
