"""Web templates built from operational templates (OPT 1.4 XML), the way EHRbase builds them.

A web template is the tree FLAT paths are made of: one node per archetype node and per RM attribute
a FLAT composition may set, each with an ``id`` (the FLAT path segment), RM type, archetype node id,
occurrences, AQL path, inputs (coded value lists, units, ordinals) and whether it is a context
field.  EHRbase derives it with openEHR_SDK's OPTParser and serves a *filtered* form of it
(``GET /definition/template/adl1.4/{id}`` with ``Accept: application/openehr.wt+json``): structure
nodes (HISTORY, ITEM_TREE, ...) and single-valued ELEMENTs are folded into their children.

:func:`build` returns the full tree (what FLAT -> canonical walks, see ``flat.py``);
:func:`filtered` the folded one; :func:`to_json` renders it as EHRbase does (so an integration test
can compare the two).  Pure Python, xml.etree only: no Django, no network.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Iterator

_NS = "{http://schemas.openehr.org/v1}"
_XSI = "{http://www.w3.org/2001/XMLSchema-instance}type"

# ------------------------------------------------------------------ the RM, as far as web templates need it
# (attribute, type in collection, multiple, nullable).  Order: declaration order in the RM classes
# (inherited first), which decides where a HashMap puts colliding keys (see _java_hash_order).
_LOCATABLE = [("name", "DV_TEXT", False, False), ("archetype_node_id", "STRING", False, False),
              ("uid", "UID_BASED_ID", False, True), ("links", "LINK", True, True),
              ("archetype_details", "ARCHETYPED", False, True), ("feeder_audit", "FEEDER_AUDIT", False, True)]
_ENTRY = _LOCATABLE + [("language", "CODE_PHRASE", False, False), ("encoding", "CODE_PHRASE", False, False),
                       ("other_participations", "PARTICIPATION", True, True),
                       ("workflow_id", "OBJECT_REF", False, True), ("subject", "PARTY_PROXY", False, False),
                       ("provider", "PARTY_PROXY", False, True)]
_CARE_ENTRY = _ENTRY + [("guideline_id", "OBJECT_REF", False, True), ("protocol", "ITEM_STRUCTURE", False, True)]
_EVENT = _LOCATABLE + [("time", "DV_DATE_TIME", False, False), ("data", "ITEM_STRUCTURE", False, False),
                       ("state", "ITEM_STRUCTURE", False, True)]
_INTERVAL = [("lower", "DV_ORDERED", False, True), ("upper", "DV_ORDERED", False, True),
             ("lower_unbounded", "BOOLEAN", False, False), ("upper_unbounded", "BOOLEAN", False, False),
             ("lower_included", "BOOLEAN", False, False), ("upper_included", "BOOLEAN", False, False)]
RM_ATTRIBUTES: dict[str, list[tuple[str, str, bool, bool]]] = {
    "COMPOSITION": _LOCATABLE + [("language", "CODE_PHRASE", False, False),
                                 ("territory", "CODE_PHRASE", False, False),
                                 ("category", "DV_CODED_TEXT", False, False),
                                 ("composer", "PARTY_PROXY", False, False),
                                 ("context", "EVENT_CONTEXT", False, True),
                                 ("content", "CONTENT_ITEM", True, True)],
    "EVENT_CONTEXT": [("health_care_facility", "PARTY_IDENTIFIED", False, True),
                      ("start_time", "DV_DATE_TIME", False, False), ("end_time", "DV_DATE_TIME", False, True),
                      ("participations", "PARTICIPATION", True, True), ("location", "STRING", False, True),
                      ("setting", "DV_CODED_TEXT", False, False), ("other_context", "ITEM_STRUCTURE", False, True)],
    "SECTION": _LOCATABLE + [("items", "CONTENT_ITEM", True, True)],
    "OBSERVATION": _CARE_ENTRY + [("data", "HISTORY", False, False), ("state", "HISTORY", False, True)],
    "EVALUATION": _CARE_ENTRY + [("data", "ITEM_STRUCTURE", False, False)],
    "INSTRUCTION": _CARE_ENTRY + [("narrative", "DV_TEXT", False, False),
                                  ("expiry_time", "DV_DATE_TIME", False, True),
                                  ("wf_definition", "DV_PARSABLE", False, True),
                                  ("activities", "ACTIVITY", True, True)],
    "ACTION": _CARE_ENTRY + [("time", "DV_DATE_TIME", False, False),
                             ("ism_transition", "ISM_TRANSITION", False, False),
                             ("instruction_details", "INSTRUCTION_DETAILS", False, True),
                             ("description", "ITEM_STRUCTURE", False, False)],
    "ADMIN_ENTRY": _ENTRY + [("data", "ITEM_STRUCTURE", False, False)],
    "GENERIC_ENTRY": _LOCATABLE + [("data", "ITEM_TREE", False, False)],
    "ACTIVITY": _LOCATABLE + [("description", "ITEM_STRUCTURE", False, False),
                              ("timing", "DV_PARSABLE", False, True),
                              ("action_archetype_id", "STRING", False, False)],
    "ISM_TRANSITION": [("current_state", "DV_CODED_TEXT", False, False),
                       ("transition", "DV_CODED_TEXT", False, True),
                       ("careflow_step", "DV_CODED_TEXT", False, True), ("reason", "DV_TEXT", True, True)],
    "INSTRUCTION_DETAILS": [("instruction_id", "LOCATABLE_REF", False, False),
                            ("activity_id", "STRING", False, False),
                            ("wf_details", "ITEM_STRUCTURE", False, True)],
    "HISTORY": _LOCATABLE + [("origin", "DV_DATE_TIME", False, False), ("period", "DV_DURATION", False, True),
                             ("duration", "DV_DURATION", False, True), ("summary", "ITEM_STRUCTURE", False, True),
                             ("events", "EVENT", True, True)],
    "EVENT": _EVENT,
    "POINT_EVENT": _EVENT,
    "INTERVAL_EVENT": _EVENT + [("width", "DV_DURATION", False, False), ("sample_count", "LONG", False, True),
                                ("math_function", "DV_CODED_TEXT", False, False)],
    "ITEM_TREE": _LOCATABLE + [("items", "ITEM", True, True)],
    "ITEM_LIST": _LOCATABLE + [("items", "ELEMENT", True, True)],
    "ITEM_SINGLE": _LOCATABLE + [("item", "ELEMENT", False, False)],
    "ITEM_TABLE": _LOCATABLE + [("rows", "CLUSTER", True, True)],
    "CLUSTER": _LOCATABLE + [("items", "ITEM", True, False)],
    "ELEMENT": _LOCATABLE + [("null_flavour", "DV_CODED_TEXT", False, True), ("value", "DATA_VALUE", False, True),
                             ("null_reason", "DV_TEXT", False, True)],
    "PARTICIPATION": _LOCATABLE + [("function", "DV_TEXT", False, False), ("mode", "DV_CODED_TEXT", False, True),
                                   ("performer", "PARTY_PROXY", False, False), ("time", "DV_INTERVAL", False, True)],
    "DV_INTERVAL": _INTERVAL,
}
LOCATABLE_TYPES = frozenset({"COMPOSITION", "SECTION", "OBSERVATION", "EVALUATION", "INSTRUCTION", "ACTION",
                             "ADMIN_ENTRY", "GENERIC_ENTRY", "ACTIVITY", "HISTORY", "EVENT", "POINT_EVENT",
                             "INTERVAL_EVENT", "ITEM_TREE", "ITEM_LIST", "ITEM_SINGLE", "ITEM_TABLE",
                             "ITEM_STRUCTURE", "CLUSTER", "ELEMENT", "ITEM", "CONTENT_ITEM", "ENTRY",
                             "CARE_ENTRY", "PARTICIPATION", "PARTY_IDENTITY", "PERSON", "ORGANISATION", "ROLE",
                             "FOLDER", "EHR_STATUS", "CAPABILITY", "CONTACT", "ADDRESS", "PARTY_RELATIONSHIP",
                             "AGENT", "GROUP"})
# Pathable but not Locatable: walked into, given RM attribute nodes.
PATHABLE_TYPES = LOCATABLE_TYPES | {"EVENT_CONTEXT", "ISM_TRANSITION", "INSTRUCTION_DETAILS"}
_LOCATABLE_ATTRIBUTE_TYPES = LOCATABLE_TYPES | {"ITEM_STRUCTURE", "CONTENT_ITEM", "ITEM", "EVENT", "HISTORY",
                                                "ACTIVITY"}
EVENT_TYPES = frozenset({"EVENT", "POINT_EVENT", "INTERVAL_EVENT"})
STRUCTURE_TYPES = frozenset({"HISTORY", "ITEM_TREE", "ITEM_LIST", "ITEM_SINGLE", "ITEM_TABLE", "ITEM_STRUCTURE"})

# openEHR terminology rubrics (en) for the codes templates constrain and FLAT defaults use.
OPENEHR_TERMS = {
    "431": "persistent", "433": "event", "451": "episodic",
    "225": "home", "227": "emergency care", "228": "primary medical care", "229": "primary nursing care",
    "230": "primary allied health care", "231": "midwifery care", "232": "secondary medical care",
    "233": "secondary nursing care", "234": "secondary allied health care", "235": "complementary health care",
    "236": "dental care", "237": "nursing home care", "238": "other care",
    "144": "maximum", "145": "minimum", "146": "mean", "147": "change", "148": "total", "149": "variation",
    "267": "mode", "268": "median", "521": "decrease", "522": "increase", "640": "actual",
    "524": "initial", "526": "planned", "527": "postponed", "528": "cancelled", "529": "scheduled",
    "245": "active", "530": "suspended", "531": "aborted", "532": "completed", "533": "expired",
    "271": "no information", "253": "unknown", "272": "masked", "273": "not applicable",
    "193": "not specified", "216": "face-to-face communication", "223": "interpreted face-to-face communication",
}
# openEHR attribute -> the terminology group its codes come from (ordered as the group lists them).
_OPENEHR_GROUPS = {
    "category": ["433", "451", "431"],
    "setting": ["225", "227", "228", "229", "230", "231", "232", "233", "234", "235", "236", "237", "238"],
    "math_function": ["145", "144", "267", "268", "146", "147", "148", "149", "521", "522", "640"],
    "current_state": ["524", "526", "527", "528", "529", "245", "530", "531", "532", "533"],
    "null_flavour": ["271", "253", "272", "273"],
}


# ------------------------------------------------------------------ nodes
@dataclass
class Input:
    suffix: str | None = None
    type: str = "TEXT"
    terminology: str | None = None
    default_value: Any = None
    list: list[dict] = field(default_factory=list)  # {"value", "label", "ordinal", "localizedLabels", ...}
    list_open: bool | None = None
    validation: dict | None = None

    def copy(self) -> "Input":
        return Input(self.suffix, self.type, self.terminology, self.default_value, [dict(v) for v in self.list],
                     self.list_open, self.validation)


@dataclass(eq=False)
class Node:
    id: str
    name: str
    rm_type: str
    min: int = 0
    max: int = 1
    node_id: str | None = None
    aql_path: str = ""
    localized_name: str | None = None
    localized_names: dict = field(default_factory=dict)
    localized_descriptions: dict = field(default_factory=dict)
    annotations: dict | None = None
    children: list["Node"] = field(default_factory=list)
    inputs: list[Input] = field(default_factory=list)
    in_context: bool = False
    archetype_slot: bool = False
    optional_id_number: int | None = None
    term_bindings: dict = field(default_factory=dict)
    proportion_types: list[str] = field(default_factory=list)

    @property
    def flat_id(self) -> str:
        """The id with its uniqueness number (``any_event2``): the FLAT path segment."""
        return self.id + (str(self.optional_id_number) if self.optional_id_number else "")

    def child(self, id_: str) -> "Node | None":
        return next((c for c in self.children if c.id == id_), None)

    def walk(self) -> Iterator["Node"]:
        yield self
        for c in self.children:
            yield from c.walk()

    def clone(self, rm_type: str | None = None) -> "Node":
        n = Node(self.id, self.name, rm_type or self.rm_type, self.min, self.max, self.node_id, self.aql_path,
                 self.localized_name, dict(self.localized_names), dict(self.localized_descriptions),
                 self.annotations, [c.clone() for c in self.children], [i.copy() for i in self.inputs],
                 self.in_context, self.archetype_slot, self.optional_id_number, dict(self.term_bindings),
                 list(self.proportion_types))
        return n


@dataclass
class WebTemplate:
    template_id: str
    default_language: str
    languages: list[str]
    tree: Node
    version: str = "2.3"


# ------------------------------------------------------------------ AQL path helpers
def _last_attribute(path: str) -> str:
    """'/a[x]/b[at1 and name/value='n/m']' -> 'b' (predicates may contain '/')."""
    steps = _split_path(path)
    return re.sub(r"\[.*$", "", steps[-1]) if steps else ""


def _split_path(path: str) -> list[str]:
    steps, cur, depth, quote = [], "", 0, False
    for ch in path:
        if ch == "'" and depth:
            quote = not quote
        if not quote:
            if ch == "[":
                depth += 1
            elif ch == "]":
                depth -= 1
        if ch == "/" and depth == 0 and not quote:
            if cur:
                steps.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        steps.append(cur)
    return steps


def _with_predicate(path: str, at_code: str) -> str:
    steps = _split_path(path)
    if not steps:
        return path
    base = steps[-1].split("[", 1)[0]
    steps[-1] = f"{base}[{at_code}]"
    return "/" + "/".join(steps)


def _with_name(path: str, name: str) -> str:
    steps = _split_path(path)
    if not steps:
        return path
    last = steps[-1]
    quoted = name.replace("\\", "\\\\").replace("'", "\\'")
    if last.endswith("]"):
        inner = last[last.index("[") + 1:-1]
        inner = re.sub(r" and name/value='(?:[^'\\]|\\.)*'", "", inner)
        steps[-1] = f"{last[:last.index('[')]}[{inner} and name/value='{quoted}']"
    else:
        steps[-1] = f"{last}[name/value='{quoted}']"
    return "/" + "/".join(steps)


def _without_names(path: str) -> str:
    return re.sub(r" and name/value='(?:[^'\\]|\\.)*'", "", path)


def has_name_predicate(path: str) -> bool:
    return bool(_split_path(path)) and "name/value=" in _split_path(path)[-1]


# ------------------------------------------------------------------ ids
_NON_ALNUM = re.compile(r"[^\w.\-]|_", re.UNICODE)


def build_id(term: str) -> str:
    """openEHR_SDK's OPTParser.buildId: letters (any script), digits, '.', '_', '-' kept, the rest one '_'."""
    cleaned = "".join(ch if (ch.isalpha() or ch in "0123456789._-") else " " for ch in term)
    normal = "_".join(cleaned.split()).lower()
    if not normal:
        return normal
    return "a" + normal if normal[0].isdigit() else normal


def _java_hash(s: str) -> int:
    h = 0
    for unit in s.encode("utf-16-be").hex(" ", 2).split():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    return h


def _java_hash_order(names: list[str]) -> list[str]:
    """The iteration order of a java.util.HashMap filled with ``names`` in this order (Archie keeps an RM
    type's attributes in one; the SDK adds RM attribute nodes in that order)."""
    cap = 16
    while len(names) > cap * 0.75:
        cap *= 2

    def bucket(k: str) -> int:
        h = _java_hash(k)
        return (h ^ (h >> 16)) & (cap - 1)
    return sorted(names, key=lambda k: (bucket(k), names.index(k)))


def rm_attributes(rm_type: str) -> dict[str, tuple[str, bool, bool]]:
    return {a: (t, m, n) for a, t, m, n in RM_ATTRIBUTES.get(rm_type, [])}


# ------------------------------------------------------------------ OPT parsing
def _t(el: ET.Element | None, path: str, default: str | None = None) -> str | None:
    if el is None:
        return default
    x = el.find(path)
    return x.text if x is not None and x.text is not None else default


def _f(tag: str) -> str:
    return "/".join(_NS + p for p in tag.split("/"))


def _xsi(el: ET.Element) -> str:
    return el.get(_XSI, "").split(":")[-1]


class _Parser:
    def __init__(self, root: ET.Element):
        self.root = root
        self.default_language = _t(root, _f("language/code_string"), "en") or "en"
        self.languages = _java_hash_order(sorted({x.text for x in root.findall(
            _f("description/details/language/code_string")) if x.text}))
        self.component_terms: dict[str, dict[str, dict[str, tuple[str, str]]]] = {}
        for onto in root.findall(_f("component_ontologies")):
            aid = onto.get("archetype_id", "")
            for td in onto.findall(_f("term_definitions")):
                lang = td.get("language", "")
                for item in td.findall(_f("items")):
                    text = desc = ""
                    for sub in item.findall(_f("items")):
                        if sub.get("id") == "text":
                            text = sub.text or ""
                        elif sub.get("id") == "description":
                            desc = sub.text or ""
                    self.component_terms.setdefault(aid, {}).setdefault(item.get("code", ""), {})[lang] = (text, desc)
        self.annotations: dict[str, dict] = {}
        for ann in root.findall(_f("annotations")):
            items = {i.get("id"): (i.text or "") for i in ann.findall(_f("items"))}
            self.annotations[_normalise_aql(re.sub(r"^[^/]+", "", ann.get("path", "")))] = items
        self.defaults: dict[str, str] = {}
        for att in root.findall(_f("constraints/attributes")):
            diff = _t(att, _f("differential_path"), "") or ""
            rel = diff.split("/", 1)[1] if "/" in diff else ""
            base = _without_names(_normalise_aql(("/" + rel if rel else "") + "/" +
                                                  (_t(att, _f("rm_attribute_name"), "") or "")))
            for child in att.findall(_f("children")):
                dv = child.find(_f("default_value"))
                if dv is None:
                    continue
                for sub in dv:
                    name = sub.tag.replace(_NS, "")
                    if len(list(sub)) == 0:
                        self.defaults[f"{base}|{name}"] = sub.text or ""
                    else:
                        code = sub.find(_f("code_string"))
                        self.defaults[f"{base}|defining_code"] = code.text if code is not None else ""

    # -- terms
    def terms_of(self, root_el: ET.Element) -> dict[str, dict[str, tuple[str, str, dict]]]:
        terms: dict[str, dict[str, tuple[str, str, dict]]] = {}
        for td in root_el.findall(_f("term_definitions")):
            text, desc, other = None, None, {}
            for item in td.findall(_f("items")):
                if item.get("id") == "text":
                    text = item.text or ""
                elif item.get("id") == "description":
                    desc = item.text or ""
                else:
                    other[item.get("id")] = item.text or ""
            terms.setdefault(td.get("code", ""), {})[self.default_language] = (text, desc, other)
        aid = _t(root_el, _f("archetype_id/value"), "")
        for code, by_lang in self.component_terms.get(aid, {}).items():
            for lang, (text, desc) in by_lang.items():
                terms.setdefault(code, {})[lang] = (text, desc, {})
        return terms

    # -- the walk
    def archetype_root(self, el: ET.Element, aql: str) -> list[Node]:
        terms = self.terms_of(el)
        nodes = self.complex_object(el, aql, terms, None)
        for n in nodes:
            n.node_id = _t(el, _f("archetype_id/value"))
            self.add_rm_attributes(n, aql)
        return nodes

    def cobject(self, el: ET.Element, aql: str, terms, attr: str) -> list[Node]:
        kind = _xsi(el)
        rm = _t(el, _f("rm_type_name"), "") or ""
        if kind == "C_ARCHETYPE_ROOT":
            aid = _t(el, _f("archetype_id/value"))
            return self.archetype_root(el, _with_predicate(aql, aid) if aid else aql)
        node_id = (_t(el, _f("node_id")) or "").strip() if rm in LOCATABLE_TYPES else ""
        path = _with_predicate(aql, node_id) if node_id else aql
        if kind == "C_COMPLEX_OBJECT":
            return self.complex_object(el, path, terms, attr)
        if kind in ("C_CODE_PHRASE", "C_CODE_REFERENCE", "C_DV_QUANTITY", "C_DV_ORDINAL"):
            return [self.domain_type(el, kind, path, terms, attr)]
        if kind == "ARCHETYPE_SLOT":
            n = self.build_node(el, attr, terms, None)
            n.aql_path = path
            n.archetype_slot = True
            return [n]
        return []

    def build_node(self, el: ET.Element, attr: str | None, terms, explicit: tuple[str, dict] | None) -> Node:
        rm = _t(el, _f("rm_type_name"), "") or ""
        occ = el.find(_f("occurrences"))
        lo = -1 if _t(occ, _f("lower_unbounded")) == "true" else int(_t(occ, _f("lower"), "0") or 0)
        hi = -1 if _t(occ, _f("upper_unbounded")) == "true" else int(_t(occ, _f("upper"), "1") or 1)
        node_id = (_t(el, _f("node_id")) or "").strip() if rm in LOCATABLE_TYPES else ""
        if node_id:
            by_lang = terms.get(node_id, {})
            name = explicit[0] if explicit else (by_lang.get(self.default_language) or ("", "", {}))[0] or ""
            n = Node(build_id(name), name, rm, lo, hi, node_id, localized_name=name)
            if explicit:
                n.localized_names.update(explicit[1])
            else:
                n.localized_names.update({lang: v[0] for lang, v in by_lang.items()})
            n.localized_names[self.default_language] = name
            n.localized_descriptions.update({lang: (v[1] if v[1] is not None else v[0])
                                             for lang, v in by_lang.items()})
            other = (by_lang.get(self.default_language) or (None, None, {}))[2]
            for k, v in other.items():
                n.annotations = n.annotations or {}
                n.annotations[k] = v
            return n
        name = attr or rm
        return Node(build_id(name), name, rm, lo, hi, localized_name=name)

    def complex_object(self, el: ET.Element, aql: str, terms, attr: str | None) -> list[Node]:
        name_node = None
        for a in el.findall(_f("attributes")):
            if _t(a, _f("rm_attribute_name")) == "name":
                kids = a.findall(_f("children"))
                if len(kids) == 1:
                    got = self.cobject(kids[0], aql, terms, "name")
                    name_node = got[0] if got else None
        names: list[tuple[str, dict]] = []
        if name_node is not None:
            for i in name_node.inputs:
                if i.suffix in (None, "code"):
                    names.extend((v.get("label"), dict(v.get("localizedLabels") or {})) for v in i.list)
        out = []
        for explicit in (names if len(names) > 1 else [names[0] if names else None]):
            node = self.build_node(el, attr, terms, explicit)
            node.aql_path = aql
            if node.node_id and explicit is not None:
                node.aql_path = _with_name(aql, explicit[0])
            local_name = name_node.clone() if name_node is not None and len(names) > 1 else name_node
            if local_name is not None:
                self.set_explicit_name(explicit, node, local_name)
            self.add_annotations(node, aql)
            self.complex_single(el, node.aql_path, terms, local_name, node)
            out.append(node)
        return out

    def set_explicit_name(self, explicit, node: Node, name_node: Node) -> None:
        name_node.aql_path = node.aql_path + "/name"
        if explicit is None:
            return
        for i in name_node.inputs:
            if i.suffix in (None, "code"):
                i.list = [v for v in i.list if v.get("label") == explicit[0]]
                break
        dc = name_node.child("defining_code")
        if dc is not None:
            dc.inputs = [i.copy() for i in name_node.inputs]

    def add_annotations(self, node: Node, aql: str) -> None:
        items = self.annotations.get(_normalise_aql(aql))
        if items:
            node.annotations = node.annotations or {}
            node.annotations.update(items)

    def complex_single(self, el: ET.Element, aql: str, terms, name_node: Node | None, node: Node) -> None:
        input_map: dict[str, Input] = {}
        for a in el.findall(_f("attributes")):
            attr = _t(a, _f("rm_attribute_name"), "") or ""
            if attr == "name":
                continue
            path = aql + "/" + attr
            new_children: list[list[Node]] = []
            for child in a.findall(_f("children")):
                if _xsi(child) == "C_PRIMITIVE_OBJECT":
                    input_map[attr] = _primitive_input(child)
                else:
                    new_children.append(self.cobject(child, path, terms, attr))
            if node.rm_type == "ACTION":
                self.ism_transitions(aql, node, attr, new_children)
            flat_new = [c for cs in new_children for c in cs]
            for c in flat_new:
                if has_name_predicate(c.aql_path):
                    continue
                if any(n is not c and n.aql_path != c.aql_path and _without_names(n.aql_path) ==
                       _without_names(c.aql_path) for n in flat_new):
                    old = c.aql_path
                    c.aql_path = _with_name(c.aql_path, c.name)
                    for d in c.children:
                        _replace_parent(d, old, c.aql_path)
            node.children.extend(flat_new)
        # choices among the children (same path, several RM types)
        for group in _choices(node).values():
            for c in group:
                _update_choice_id(c)
        if node.rm_type == "ELEMENT":
            if not node.children:
                for t in ("DV_TEXT", "DV_CODED_TEXT", "DV_MULTIMEDIA", "DV_PARSABLE", "DV_STATE", "DV_BOOLEAN",
                          "DV_IDENTIFIER", "DV_URI", "DV_EHR_URI", "DV_DURATION", "DV_QUANTITY", "DV_COUNT",
                          "DV_PROPORTION", "DV_DATE_TIME", "DV_TIME", "DV_ORDINAL", "DV_DATE"):
                    sub = Node("", node.name, t, 0, 1, aql_path=aql + "/value", in_context=True,
                               localized_name=node.localized_name)
                    _update_choice_id(sub)
                    sub.localized_descriptions.update(node.localized_descriptions)
                    sub.localized_names.update(node.localized_names)
                    self.add_inputs(sub, input_map)
                    node.children.append(sub)
            else:
                true_children = true_children_of_element(node)
                for c in true_children:
                    c.node_id = node.node_id
                    c.annotations = node.annotations
                    c.name = node.name
                    c.localized_descriptions.update(node.localized_descriptions)
                    c.localized_names.update(node.localized_names)
                    c.localized_name = node.localized_name
                if len(true_children) != 1 and not _choices(node):
                    for c in true_children:
                        if _update_choice_id(c):
                            c.localized_descriptions.update(node.localized_descriptions)
                            c.localized_names.update(node.localized_names)
        if node.rm_type == "DV_CODED_TEXT":
            phrase = next((n for c in node.children for n in c.walk() if n.rm_type == "CODE_PHRASE"), None)
            if phrase is None:
                node.inputs += [Input("value", "TEXT"), Input("code", "TEXT")]
            else:
                node.inputs += phrase.inputs
        if name_node is not None:
            node.children.append(name_node)
        self.add_rm_attributes(node, aql)
        if not node.inputs:
            self.add_inputs(node, input_map)
        make_id_unique(node)
        for c in node.children:
            _add_in_context(node, c)

    def ism_transitions(self, aql: str, node: Node, attr: str, new_children: list[list[Node]]) -> None:
        isms = [n for cs in new_children for n in cs if n.rm_type == "ISM_TRANSITION"]
        if not isms:
            return
        first = isms[0]
        ism = Node(build_id(attr), attr, "ISM_TRANSITION", first.min, first.max, aql_path=aql + "/" + attr,
                   in_context=True)
        proto = first.child("careflow_step")
        if proto is None:
            raise ValueError("ISM_TRANSITION without careflow_step")
        step = Node("careflow_step", "Careflow_step", "DV_CODED_TEXT", proto.min, proto.min,
                    aql_path=f"{aql}/{attr}/careflow_step", in_context=True)
        code = Input("code", "CODED_TEXT", "local")
        for it in isms:
            cs = it.child("careflow_step")
            state = it.child("current_state")
            if cs is None or not cs.inputs or not cs.inputs[0].list:
                continue
            value = dict(cs.inputs[0].list[0])
            value["currentStates"] = list(value.get("currentStates") or []) + \
                [v["value"] for v in (state.inputs[0].list if state is not None and state.inputs else [])]
            code.list.append(value)
        step.inputs.append(code)
        ism.children.append(step)
        proto_state = first.child("current_state")
        state = Node("current_state", "Current_state", "DV_CODED_TEXT", proto_state.min, proto_state.min,
                     aql_path=f"{aql}/{attr}/current_state", in_context=True)
        code2 = Input("code", "CODED_TEXT", "openehr")
        for it in isms:
            cs = it.child("current_state")
            for i in (cs.inputs if cs is not None else []):
                code2.list.extend(dict(v) for v in i.list)
        state.inputs.append(code2)
        ism.children.append(state)
        transition = first.child("transition")
        transition.aql_path = f"{aql}/{attr}/transition"
        transition.in_context = True
        ism.children.append(transition)
        node.children.append(ism)

    def add_rm_attributes(self, node: Node, aql: str) -> None:
        attrs = RM_ATTRIBUTES.get(node.rm_type)
        if attrs is None or (node.rm_type not in PATHABLE_TYPES and node.rm_type != "DV_INTERVAL"):
            return
        info = {a: (t, m, n) for a, t, m, n in attrs}
        for name in _java_hash_order([a for a, *_ in attrs]):
            t, multiple, nullable = info[name]
            if name == "value" or (node.rm_type in EVENT_TYPES and name == "offset"):
                continue
            if node.rm_type == "ELEMENT" and name not in ("name", "feeder_audit", "null_flavour"):
                continue
            if t in _LOCATABLE_ATTRIBUTE_TYPES:
                continue
            if node.rm_type == "DV_INTERVAL" and name == "interval":
                continue
            wid = "work_flow_id" if name == "workflow_id" else name
            if any(c.id == build_id(wid) for c in node.children):
                continue
            node.children.append(self.attribute_node(wid, t, multiple, nullable, aql))

    def attribute_node(self, name: str, rm_type: str, multiple: bool, nullable: bool, aql: str) -> Node:
        n = Node(build_id(name), name, rm_type, 0 if nullable else 1, -1 if multiple else 1,
                 aql_path=f"{aql}/{name}", localized_name=None)
        if name in ("action_archetype_id", "math_function"):
            n.min = 1
        self.add_inputs(n, {})
        self.add_rm_attributes(n, n.aql_path)
        return n

    def domain_type(self, el: ET.Element, kind: str, aql: str, terms, attr: str) -> Node:
        node = self.build_node(el, attr, terms, None)
        node.aql_path = aql
        if kind == "C_DV_QUANTITY":
            mag = Input("magnitude", "DECIMAL")
            unit = Input("unit", "CODED_TEXT")
            assumed = el.find(_f("assumed_value"))
            if assumed is not None:
                if _t(assumed, _f("magnitude")):
                    mag.default_value = str(float(_t(assumed, _f("magnitude"))))
                if _t(assumed, _f("units")):
                    unit.default_value = _t(assumed, _f("units"))
            d = self.defaults.get(f"{_without_names(_normalise_aql(aql))}|magnitude")
            if d is not None:
                mag.default_value = d
            d = self.defaults.get(f"{_without_names(_normalise_aql(aql))}|units")
            if d is not None:
                unit.default_value = d
            node.inputs += [mag, unit]
            for item in el.findall(_f("list")):
                u = _t(item, _f("units"), "")
                value: dict = {"value": u, "label": u}
                validation = {}
                if item.find(_f("magnitude")) is not None:
                    validation["range"] = _interval(item.find(_f("magnitude")))
                if item.find(_f("precision")) is not None:
                    validation["precision"] = _interval(item.find(_f("precision")))
                if validation:
                    value["validation"] = validation
                labels = {lang: v[0] for lang, v in terms.get(u, {}).items()}
                if labels:
                    value["localizedLabels"] = labels
                unit.list.append(value)
            if len(unit.list) == 1 and unit.list[0].get("validation"):
                mag.validation = unit.list[0]["validation"]
        elif kind == "C_DV_ORDINAL":
            code = Input(None, "CODED_TEXT")
            d = self.defaults.get(f"{_without_names(_normalise_aql(aql))}|defining_code")
            if d is not None:
                code.default_value = d
            for item in el.findall(_f("list")):
                c = _t(item, _f("symbol/defining_code/code_string"), "")
                value = {"ordinal": int(_t(item, _f("value"), "0") or 0), "value": c}
                by_lang = terms.get(c, {})
                value["localizedLabels"] = {lang: v[0] for lang, v in by_lang.items()}
                value["localizedDescriptions"] = {lang: v[1] for lang, v in by_lang.items()}
                value["label"] = value["localizedLabels"].get(self.default_language)
                value["localizedDescriptions"].setdefault(self.default_language, "")
                code.list.append(value)
            node.inputs.append(code)
        else:
            self.code_phrase(el, kind, aql, terms, attr, node)
        return node

    def code_phrase(self, el: ET.Element, kind: str, aql: str, terms, attr: str, node: Node) -> None:
        code = Input("code")
        d = self.defaults.get(f"{_without_names(_normalise_aql(aql))}|defining_code")
        if d is not None:
            code.default_value = d
        node.inputs.append(code)
        assumed = _t(el, _f("assumed_value/code_string"))
        if assumed:
            code.default_value = assumed
        if kind == "C_CODE_REFERENCE":
            ref = _t(el, _f("referenceSetUri")) or ""
            code.terminology = ref[len("terminology:"):] if ref.startswith("terminology:") else ref
        else:
            code.terminology = _t(el, _f("terminology_id/value"))
        codes = [c.text or "" for c in el.findall(_f("code_list"))]
        if code.terminology == "openehr":
            group = attr if attr in _OPENEHR_GROUPS else (_last_attribute(aql.rsplit("/", 1)[0]) if "/" in aql else "")
            listed = codes or _OPENEHR_GROUPS.get(group, [])
            for c in listed:
                if c in OPENEHR_TERMS:
                    code.list.append({"value": c, "label": OPENEHR_TERMS[c],
                                      "localizedLabels": {lang: OPENEHR_TERMS[c] for lang in (self.languages or
                                                                                            [self.default_language])}})
        else:
            for c in codes:
                key = c if not code.terminology or code.terminology == "local" else f"{code.terminology}::{c}"
                term = terms.get(key, {}).get(self.default_language)
                if term is None:
                    key = key.replace(f"{code.terminology}::", "")
                    term = terms.get(key, {}).get(self.default_language)
                if term is None:
                    continue
                value = {"value": c.replace(f"{code.terminology}::", "") if code.terminology else c,
                         "label": term[0]}
                value["localizedLabels"] = {lang: v[0] for lang, v in terms.get(key, {}).items()}
                value["localizedDescriptions"] = {lang: v[1] for lang, v in terms.get(key, {}).items() if v[1]}
                value["localizedDescriptions"].setdefault(self.default_language, "")
                code.list.append(value)
        if not code.list:
            code.type = "TEXT"
            node.inputs.append(Input("value", "TEXT", code.terminology))
        else:
            code.type = "CODED_TEXT"

    def add_inputs(self, node: Node, input_map: dict[str, Input]) -> None:
        def make(key: str, suffix: str | None, type_: str) -> Input:
            got = input_map.get(key)
            return got.copy() if got is not None else Input(suffix, type_)
        t = node.rm_type
        ins = node.inputs
        if t == "DV_DATE":
            ins.append(make("value", None, "DATE"))
        elif t == "DV_DATE_TIME":
            ins.append(make("value", None, "DATETIME"))
        elif t == "DV_TIME":
            ins.append(make("value", None, "TIME"))
        elif t == "DV_ORDINAL":
            ins.append(make("value", None, "CODED_TEXT"))
        elif t == "PARTY_PROXY":
            ins += [Input("id"), Input("id_scheme"), Input("id_namespace"), Input("name")]
        elif t == "DV_PARSABLE":
            ins += [Input("value"), Input("formalism")]
        elif t in ("DV_TEXT", "DV_EHR_URI", "DV_URI", "DV_MULTIMEDIA", "UID_BASED_ID", "STRING"):
            ins.append(make("value", None, "TEXT"))
        elif t == "DV_COUNT":
            i = make("magnitude", None, "INTEGER")
            d = self.defaults.get(f"{_without_names(_normalise_aql(node.aql_path))}|magnitude")
            if d is not None:
                i.default_value = d
            ins.append(i)
        elif t == "DV_QUANTITY":
            i = make("magnitude", "magnitude", "DECIMAL")
            ins += [i, Input("unit")]
        elif t == "DV_BOOLEAN":
            ins.append(make("value", None, "BOOLEAN"))
        elif t in ("DV_STATE", "DV_CODED_TEXT"):
            ins += [Input("code"), Input("value")]
        elif t == "DV_PROPORTION":
            num = make("numerator", "numerator", "DECIMAL")
            num.suffix = "numerator"
            den = make("denominator", "denominator", "DECIMAL")
            den.suffix = "denominator"
            types = [int(v["value"]) for v in (input_map["type"].list if "type" in input_map else [])]
            node.proportion_types = [_PROPORTION_TYPES[x] for x in types if x in _PROPORTION_TYPES] or \
                list(_PROPORTION_TYPES.values())
            ins += [num, den]
        elif t == "DV_IDENTIFIER":
            ins += [Input("id"), Input("type"), Input("issuer"), Input("assigner")]
        elif t == "DV_DURATION":
            got = input_map.get("value")
            pattern = ((got.validation or {}).get("pattern") if got is not None else None) or ""
            month_part = pattern[:len(pattern) - len(pattern.split("T", 1)[1])] if "T" in pattern else pattern
            minute_part = pattern.split("D", 1)[1] if "D" in pattern else ""
            for symbol, unit, part in (("Y", "year", pattern), ("M", "month", month_part), ("D", "day", pattern),
                                       ("W", "week", pattern), ("H", "hour", pattern), ("M", "minute", minute_part),
                                       ("S", "second", pattern)):
                if not pattern or symbol in part:
                    ins.append(Input(unit, "INTEGER", validation={"range": {"min": 0, "minOp": ">="}}))
        for i in ins:
            d = self.defaults.get(f"{_without_names(_normalise_aql(node.aql_path))}|{i.suffix or 'value'}")
            if d is not None:
                i.default_value = d


_PROPORTION_TYPES = {0: "RATIO", 1: "UNITARY", 2: "PERCENT", 3: "FRACTION", 4: "INTEGER_FRACTION"}


def _interval(el: ET.Element) -> dict:
    out: dict = {}
    if _t(el, _f("lower_unbounded")) != "true" and _t(el, _f("lower")) is not None:
        out["min"] = float(_t(el, _f("lower")))
        out["minOp"] = ">=" if _t(el, _f("lower_included")) != "false" else ">"
    if _t(el, _f("upper_unbounded")) != "true" and _t(el, _f("upper")) is not None:
        out["max"] = float(_t(el, _f("upper")))
        out["maxOp"] = "<=" if _t(el, _f("upper_included")) != "false" else "<"
    return out


def _primitive_input(el: ET.Element) -> Input:
    item = el.find(_f("item"))
    kind = _xsi(item) if item is not None else ""
    type_ = (_t(el, _f("rm_type_name"), "") or "").replace("_", "")
    type_ = {"REAL": "DECIMAL", "STRING": "TEXT"}.get(type_, type_)
    i = Input(None, type_)
    if item is None:
        return i
    assumed = item.find(_f("assumed_value"))
    if assumed is not None and assumed.text is not None:
        i.default_value = assumed.text
    if kind == "C_STRING":
        for s in item.findall(_f("list")):
            i.list.append({"value": s.text or "", "label": s.text or ""})
        lo = _t(item, _f("list_open"))
        i.list_open = (lo == "true") if lo is not None else None
        pattern = _t(item, _f("pattern"))
        if pattern:
            i.validation = {"pattern": pattern}
    elif kind == "C_INTEGER":
        for s in item.findall(_f("list")):
            i.list.append({"value": s.text or ""})
    elif kind == "C_BOOLEAN":
        tv, fv = _t(item, _f("true_valid")) == "true", _t(item, _f("false_valid")) == "true"
        if tv != fv:
            i.list.append({"value": str(tv).lower(), "label": str(tv).lower()})
    elif kind in ("C_DATE_TIME", "C_DATE", "C_TIME", "C_DURATION"):
        pattern = _t(item, _f("pattern"))
        if pattern:
            i.validation = {"pattern": pattern}
    return i


def _normalise_aql(path: str) -> str:
    """'[at0001, 'Name']' -> '[at0001 and name/value='Name']' (the OPT's annotation/default paths)."""
    return re.sub(r"\[([^\],']+),\s*'((?:[^'\\]|\\.)*)'\]", r"[\1 and name/value='\2']", path)


def _replace_parent(node: Node, old: str, new: str) -> None:
    child_old = node.aql_path
    if node.aql_path.startswith(old):
        node.aql_path = new + node.aql_path[len(old):]
    for c in node.children:
        _replace_parent(c, child_old, node.aql_path)


def _choices(node: Node) -> dict[str, list[Node]]:
    by: dict[str, list[Node]] = {}
    for c in node.children:
        by.setdefault(c.aql_path, []).append(c)
    return {k: v for k, v in by.items() if len(v) > 1 and len({c.rm_type for c in v}) > 1}


def _update_choice_id(node: Node) -> bool:
    if node.rm_type.startswith("DV_"):
        node.id = node.rm_type[3:].lower() + "_value"
        return True
    return False


def true_children_of_element(node: Node) -> list[Node]:
    return [c for c in node.children if c.name not in ("name", "null_flavour", "feeder_audit", "null_reason")
            and c.id not in ("name", "null_flavour", "feeder_audit", "null_reason")]


def make_id_unique(node: Node) -> None:
    groups: dict[str, list[Node]] = {}
    for c in node.children:
        groups.setdefault(c.id, []).append(c)
    for same in groups.values():
        if len(same) == 1:
            same[0].optional_id_number = None
            continue
        for i, n in enumerate(same[1:], start=1):
            n.optional_id_number = i + 1
            if n.rm_type == "ELEMENT":
                for c in n.children:
                    if c.id == n.id:
                        c.optional_id_number = i + 1


_IN_CONTEXT = [
    (LOCATABLE_TYPES, ("language",)),
    ({"ACTION"}, ("time",)),
    ({"ACTIVITY"}, ("timing", "action_archetype_id")),
    ({"INSTRUCTION"}, ("narrative",)),
    ({"ISM_TRANSITION"}, ("current_state", "careflow_step", "transition")),
    ({"HISTORY"}, ("origin",)),
    (EVENT_TYPES, ("time",)),
    ({"OBSERVATION", "EVALUATION", "INSTRUCTION", "ACTION", "ADMIN_ENTRY"},
     ("language", "provider", "other_participations", "subject", "encoding")),
    ({"EVENT_CONTEXT"}, ("start_time", "end_time", "location", "setting", "healthCareFacility", "participations")),
    ({"COMPOSITION"}, ("language", "territory", "composer", "category")),
]


def _add_in_context(node: Node, child: Node) -> None:
    for types, ids in _IN_CONTEXT:
        if node.rm_type in types and child.id in ids:
            child.in_context = True


# ------------------------------------------------------------------ public
def build(opt_xml: str | bytes) -> WebTemplate:
    """The full (unfiltered) web template of an OPT."""
    root = ET.fromstring(opt_xml.encode("utf-8") if isinstance(opt_xml, str) else opt_xml)
    if root.tag != _NS + "template":
        raise ValueError("not an operational template")
    p = _Parser(root)
    definition = root.find(_f("definition"))
    if definition is None:
        raise ValueError("operational template without definition")
    tree = p.archetype_root(definition, "")[0]
    tid = _t(root, _f("template_id/value"), "") or ""
    return WebTemplate(tid, p.default_language, p.languages or [p.default_language], tree)


def skip_in_filter(node: Node, parent: Node | None) -> bool:
    """openEHR_SDK Filter.skip: nodes the served web template (and FLAT paths) fold away."""
    if node.archetype_slot:
        return True
    if parent is not None and non_mandatory_rm_attribute(node, parent, in_filter=True):
        return True
    if node.rm_type in STRUCTURE_TYPES:
        return True
    if parent is not None and node.rm_type in EVENT_TYPES:
        return sum(1 for c in parent.children if c.rm_type in EVENT_TYPES) == 1 and node.max == 1
    if node.rm_type == "ELEMENT":
        return len(node.children) == 1
    if node.rm_type == "CODE_PHRASE" and parent is not None:
        return parent.rm_type == "DV_CODED_TEXT"
    return False


_MANDATORY_NOT_IN_WT = {"name", "archetype_node_id", "origin", "media_type", "upper_included",
                        "lower_included", "upper_unbounded", "lower_unbounded"}


def non_mandatory_rm_attribute(node: Node, parent: Node, *, in_filter: bool = False) -> bool:
    """RM attributes that FLAT sets with a leading '_' (``_uid``, ``_end_time``...) or not at all."""
    rm = parent.rm_type
    if node.name in _MANDATORY_NOT_IN_WT:
        return True
    shown = (rm == "ACTIVITY" and node.name == "timing") or (rm == "INSTRUCTION" and node.name == "expiry_time") \
        or (rm == "ISM_TRANSITION" and node.name == "transition") \
        or (in_filter and rm == "COMPOSITION" and node.name == "context") \
        or (not in_filter and rm == "INTERVAL_EVENT" and node.name in ("width", "math_function"))
    if shown:
        return False
    attrs = rm_attributes(rm)
    name = "workflow_id" if node.name == "work_flow_id" else node.name
    return node.min == 0 and name in attrs


def filtered(wt: WebTemplate) -> Node:
    """The folded tree EHRbase serves (a copy; ``wt.tree`` is left as it is)."""
    tree = wt.tree.clone()
    return _filter(tree, None)[0]


def _merge_dv_text(node: Node) -> Node:
    coded = next(c for c in node.children if c.id == "coded_text_value")
    merged = Node("value", node.name, "DV_CODED_TEXT", node.min, node.max, aql_path=coded.aql_path,
                  localized_name=node.localized_name, localized_names=dict(node.localized_names),
                  localized_descriptions=dict(node.localized_descriptions), annotations=node.annotations)
    merged.inputs = [i.copy() for i in coded.inputs] + [Input("other", "TEXT")]
    for i in merged.inputs:
        if i.suffix == "code":
            i.list_open = True
    return merged


def is_choice_dv_text_and_coded(node: Node) -> bool:
    kids = true_children_of_element(node)
    return len(kids) == 2 and {c.rm_type for c in kids} == {"DV_TEXT", "DV_CODED_TEXT"}


def _filter(node: Node, parent: Node | None) -> list[Node]:
    isms = [c for c in node.children if c.rm_type == "ISM_TRANSITION"]
    if isms:
        node.children = [c for c in node.children if c.rm_type != "ISM_TRANSITION"] + [isms[0]]
    if node.rm_type == "ELEMENT":
        if is_choice_dv_text_and_coded(node):
            merged = _merge_dv_text(node)
            merged.id = node.flat_id
            node.children = [merged]
        else:
            kids = true_children_of_element(node)
            if len(kids) == 1:
                kids[0].id = node.flat_id
                kids[0].optional_id_number = None
    new_children: list[Node] = []
    for c in node.children:
        new_children.extend(_filter(c, node))
    node.children = new_children
    if skip_in_filter(node, parent):
        if node.rm_type == "ELEMENT":
            for c in node.children:
                c.min, c.max = node.min, node.max
        out = node.children
    else:
        out = [node]
    make_id_unique(node)
    return out


def to_json(wt: WebTemplate, *, tree: Node | None = None) -> dict:
    """The served form: ``{"templateId", "version", "defaultLanguage", "languages", "tree"}``."""
    return {"templateId": wt.template_id, "version": wt.version, "defaultLanguage": wt.default_language,
            "languages": list(wt.languages), "tree": _node_json(tree if tree is not None else filtered(wt))}


def _node_json(n: Node) -> dict:
    out: dict[str, Any] = {"id": n.flat_id, "name": n.name}
    if n.localized_name is not None:
        out["localizedName"] = n.localized_name
    out["rmType"] = n.rm_type
    if n.node_id:
        out["nodeId"] = n.node_id
    out["min"], out["max"] = n.min, n.max
    if n.localized_names:
        out["localizedNames"] = dict(n.localized_names)
    if n.localized_descriptions:
        out["localizedDescriptions"] = dict(n.localized_descriptions)
    if n.annotations:
        out["annotations"] = dict(n.annotations)
    if n.aql_path:
        out["aqlPath"] = n.aql_path
    if n.children:
        out["children"] = [_node_json(c) for c in n.children]
    if n.inputs:
        out["inputs"] = [_input_json(i) for i in n.inputs]
    if n.in_context:
        out["inContext"] = True
    return out


def _input_json(i: Input) -> dict:
    out: dict[str, Any] = {}
    if i.suffix is not None:
        out["suffix"] = i.suffix
    out["type"] = i.type
    if i.default_value is not None:
        out["defaultValue"] = i.default_value
    if i.list:
        out["list"] = [dict(v) for v in i.list]
    if i.list_open is not None:
        out["listOpen"] = i.list_open
    if i.terminology is not None:
        out["terminology"] = i.terminology
    return out


def find_by_flat_path(tree: Node, ids: list[str]) -> Node | None:
    node = tree
    for seg in ids:
        node = next((c for c in node.children if c.flat_id == seg), None)
        if node is None:
            return None
    return node
