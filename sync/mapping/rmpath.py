"""openEHR paths over canonical JSON: parse, find, create, and name nodes.

Two path flavours meet here:

* spec paths, as written in mapping files: ``data[at0001,'History']/events[at0006]/data[at0003]/items[at0004]``.
  They match by archetype node id only; the optional name is the default name used when the
  reverse direction has to create the node.
* node paths, produced for one concrete node: the same steps plus ``:k`` when the node is the
  k-th (0-based, k>0) sibling with the same node id, e.g. ``/content[openEHR-EHR-SECTION.adhoc.v1]:3``.
  They go into FHIR identifiers and residue extensions, so they must be stable and resolvable.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_STEP = re.compile(r"^(?P<attr>[a-z_]+)(?:\[(?P<node>[^\],']+?)\s*(?:,\s*'(?P<name>[^']*)')?\])?(?::(?P<idx>\d+))?$")

# attribute -> RM type created when the reverse direction needs a container there
_CONTAINER_TYPES = {("OBSERVATION", "data"): "HISTORY", ("POINT_EVENT", "data"): "ITEM_TREE",
                    ("INTERVAL_EVENT", "data"): "ITEM_TREE", ("POINT_EVENT", "state"): "ITEM_TREE",
                    ("INTERVAL_EVENT", "state"): "ITEM_TREE", ("HISTORY", "events"): "POINT_EVENT",
                    ("HISTORY", "summary"): "ITEM_TREE", ("EVALUATION", "data"): "ITEM_TREE",
                    ("ADMIN_ENTRY", "data"): "ITEM_TREE",
                    ("ACTION", "description"): "ITEM_TREE", ("INSTRUCTION", "activities"): "ACTIVITY",
                    ("ACTIVITY", "description"): "ITEM_TREE"}
LIST_ATTRS = {"content", "items", "events", "activities", "other_participations", "links"}
_ENTRY_ATTRS = {"protocol", "data", "description", "state", "summary", "other_details", "other_context"}


@dataclass(frozen=True)
class Step:
    attr: str
    node: str | None = None
    name: str | None = None
    idx: int | None = None

    def render(self) -> str:
        s = self.attr + (f"[{self.node}]" if self.node else "")
        return s + (f":{self.idx}" if self.idx else "")


def parse(path: str) -> list[Step]:
    """Split a spec or node path (leading '/' optional) into steps (a fresh list: callers may edit it)."""
    return list(_parse(path))


@functools.lru_cache(maxsize=4096)  # the same spec and node paths are parsed for every entry
def _parse(path: str) -> tuple[Step, ...]:
    out = []
    for raw in _split(path.strip().strip("/")):
        m = _STEP.match(raw.strip())
        if not m:
            raise ValueError(f"bad openEHR path step {raw!r}")
        out.append(Step(m["attr"], m["node"], m["name"], int(m["idx"]) if m["idx"] else None))
    return tuple(out)


def _split(path: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in path:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "/" and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        parts.append(cur)
    return parts


def render(steps: list[Step]) -> str:
    return "/" + "/".join(s.render() for s in steps)


def children(node: dict, attr: str) -> list:
    v = node.get(attr)
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def find(root: dict, steps: list[Step]) -> list:
    """All values reached by the steps (node ids match, names ignored, :k picks one occurrence)."""
    cur = [root]
    for st in steps:
        nxt = []
        for n in cur:
            if not isinstance(n, dict):
                continue
            kids = children(n, st.attr)
            if st.node:
                kids = [k for k in kids if isinstance(k, dict) and k.get("archetype_node_id") == st.node]
            if st.idx is not None:
                kids = kids[st.idx:st.idx + 1]
            nxt.extend(kids)
        cur = nxt
    return cur


def find_one(root: dict, path: str):
    got = find(root, parse(path))
    return got[0] if got else None


def new_node(parent: dict, st: Step, is_last: bool, next_step: Step | None) -> dict:
    ptype = parent.get("_type", "")
    rm = _CONTAINER_TYPES.get((ptype, st.attr))
    if st.attr in ("protocol", "state", "other_details") and rm is None:
        rm = "ITEM_TREE"
    if st.attr == "items":
        rm = "CLUSTER" if (next_step and next_step.attr == "items") or (st.node or "").startswith("openEHR-") \
            else "ELEMENT"
    node = {"_type": rm or "ELEMENT", "name": {"_type": "DV_TEXT", "value": st.name or st.node or st.attr}}
    if st.node:
        node["archetype_node_id"] = st.node
        if st.node.startswith("openEHR-"):
            node["archetype_details"] = {"_type": "ARCHETYPED", "archetype_id": {"_type": "ARCHETYPE_ID",
                                         "value": st.node}, "rm_version": "1.0.4"}
    return node


def ensure(root: dict, steps: list[Step], *, fresh_last: bool = False) -> dict:
    """Walk the steps, creating nodes that are missing.  Intermediate steps reuse the first match;
    with ``fresh_last`` the last step always creates a new sibling (repeated elements)."""
    cur = root
    for i, st in enumerate(steps):
        last = i == len(steps) - 1
        kids = [k for k in children(cur, st.attr)
                if isinstance(k, dict) and (not st.node or k.get("archetype_node_id") == st.node)]
        if kids and not (last and fresh_last):
            cur = kids[min(st.idx or 0, len(kids) - 1)]
            continue
        node = new_node(cur, st, last, steps[i + 1] if not last else None)
        if st.attr in LIST_ATTRS:
            cur.setdefault(st.attr, []).append(node)
        else:
            cur[st.attr] = node
        cur = node
    return cur


def jcopy(v):
    """Deep copy of JSON data (dicts, lists, immutable scalars): several times faster than
    copy.deepcopy, which is general (memo, reducers) and the hot spot of mapping constants."""
    if isinstance(v, dict):
        return {k: jcopy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [jcopy(x) for x in v]
    return v


def is_locatable(v) -> bool:
    return isinstance(v, dict) and "archetype_node_id" in v


def walk(node: dict, prefix: str = ""):
    """Yield (node path, node) for every LOCATABLE under ``node`` (not the node itself).
    Attributes are visited in sorted order, never in the JSON's key order: a composition fresh from
    EHRbase and the same one reloaded from JSONB (keys reordered) must give the same residue order."""
    for attr in sorted(node):
        val = node[attr]
        if attr in ("name", "archetype_details", "feeder_audit", "value", "null_flavour", "uid", "links"):
            continue
        items = val if isinstance(val, list) else [val]
        seen: dict[str, int] = {}
        for item in items:
            if not is_locatable(item):
                continue
            nid = item["archetype_node_id"]
            k = seen.get(nid, 0)
            seen[nid] = k + 1
            path = f"{prefix}/{attr}[{nid}]" + (f":{k}" if k else "")
            yield path, item
            yield from walk(item, path)


def node_paths(node: dict) -> dict[str, dict]:
    return dict(walk(node))


def entries(composition: dict) -> list[tuple[str, dict]]:
    """Every ENTRY in the composition, with its node path (entries inside SECTIONs included)."""
    out = []
    for path, n in walk({"content": composition.get("content") or []}):
        if n.get("_type") in ("OBSERVATION", "EVALUATION", "INSTRUCTION", "ACTION", "ADMIN_ENTRY") \
                or (n.get("_type") is None and str(n.get("archetype_node_id", "")).startswith("openEHR-EHR-")
                    and ".v" in n["archetype_node_id"] and "-SECTION." not in n["archetype_node_id"]
                    and "-CLUSTER." not in n["archetype_node_id"]):
            if "/content[" in path and path.count("[openEHR-EHR-") == path.count("[openEHR-EHR-SECTION") + 1:
                out.append((path, n))
    return out
