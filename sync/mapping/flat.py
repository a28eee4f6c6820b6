"""FLAT compositions (EHRbase's simSDT JSON) -> canonical JSON, through the web template of the OPT.

    from sync.mapping import flat
    comp = flat.to_canonical(flat_dict, opt_xml)            # or a WebTemplate from webtemplate.build
    comp = flat.to_canonical(flat_dict, template_id="...")  # an OPT registered with templates.register

The conventions are EHRbase's (openEHR_SDK ``FlatJsonUnmarshaller``), so a FLAT composition EHRbase
accepts comes out as EHRbase stores it: paths are web-template node ids (``blood_pressure:0/any_event:1/
systolic|magnitude``), ``:n`` picks the n-th sibling (none means 0), ``|suffix`` sets an attribute
(``|code``, ``|value``, ``|terminology``, ``|magnitude``, ``|unit``, ``|numerator``, ``|ordinal``,
``|name``, ``|id``, ``|other``...), a leading ``_`` names an optional RM attribute (``_uid``,
``_end_time``, ``_health_care_facility``, ``_work_flow_id``, ``_guideline_id``, ``_link:n``,
``_instruction_details``, ``_mapping:n``...), and ``ctx/...`` keys give defaults (language, territory,
composer, time, setting, participations...).  What EHRbase fills in, we fill in the same way: entry
language from the composition, encoding UTF-8, subject PARTY_SELF, history origin = first event time,
missing times = ``ctx/time`` or now, setting "other care", ISM state from the careflow step (else
"completed"), activity timing "R1", narrative "<none>", interval-event math function "actual".

A key no node of the template takes raises :class:`FlatError` naming the key(s) (never a value), as
EHRbase answers "Could not consume Parts [...]".  Pure: no Django, no network.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import webtemplate
from .errors import MalformedInput
from .webtemplate import EVENT_TYPES, PATHABLE_TYPES, Input, Node, WebTemplate

__all__ = ["FlatError", "to_canonical", "is_flat", "web_template", "register", "template_for", "parse_key"]


class FlatError(MalformedInput):
    """A FLAT composition that cannot be converted; ``keys`` are the FLAT keys at fault."""

    def __init__(self, message: str, *, keys: list[str] | None = None, template_id: str | None = None):
        self.keys = sorted(keys or [])
        self.template_id = template_id
        shown = ", ".join(self.keys[:20]) + (f" (+{len(self.keys) - 20} more)" if len(self.keys) > 20 else "")
        super().__init__(f"{message}: {shown}" if self.keys else message, path=self.keys[0] if self.keys else None,
                         rule="flat")


# ------------------------------------------------------------------ keys
@dataclass(frozen=True)
class Key:
    segs: tuple[tuple[str, int | None], ...]
    attr: str | None
    raw: str

    def starts_with(self, prefix: tuple[tuple[str, int | None], ...]) -> bool:
        if len(self.segs) < len(prefix):
            return False
        return all(a[0] == b[0] and (a[1] or 0) == (b[1] or 0) for a, b in zip(self.segs, prefix))

    def is_exactly(self, path: tuple[tuple[str, int | None], ...], attr: str | None) -> bool:
        return len(self.segs) == len(path) and self.starts_with(path) and self.attr == attr


_SEG = re.compile(r"^(.*?)(?::(\d+))?$")


def parse_key(key: str) -> Key:
    path, _, attr = key.partition("|")
    segs = []
    for s in path.split("/"):
        m = _SEG.match(s)
        segs.append((m.group(1), int(m.group(2)) if m.group(2) is not None else None))
    return Key(tuple(segs), attr if _ else None, key)


def is_flat(doc: Any) -> bool:
    """A JSON object of path keys (``root/...`` or ``ctx/...``) and scalar values."""
    return isinstance(doc, dict) and bool(doc) and "_type" not in doc and "resourceType" not in doc and all(
        isinstance(k, str) and ("/" in k or k.startswith("ctx")) for k in doc) and all(
        not isinstance(v, (dict, list)) for v in doc.values())


# ------------------------------------------------------------------ templates
_WT_CACHE: dict[str, WebTemplate] = {}
_REGISTERED: dict[str, WebTemplate] = {}  # template id -> web template


def web_template(opt: str | bytes | Path | WebTemplate) -> WebTemplate:
    """The (cached) web template of an OPT given as XML text/bytes, a path, or already built."""
    if isinstance(opt, WebTemplate):
        return opt
    if isinstance(opt, Path) or (isinstance(opt, str) and not opt.lstrip("\ufeff \n\r\t").startswith("<")):
        opt = Path(opt).read_text(encoding="utf-8-sig")
    text = opt.decode("utf-8-sig") if isinstance(opt, bytes) else opt
    text = text.lstrip("\ufeff")
    if text not in _WT_CACHE:
        _WT_CACHE[text] = webtemplate.build(text)
    return _WT_CACHE[text]


def register(opt: str | bytes | Path | WebTemplate) -> WebTemplate:
    """Remember an OPT so FLAT compositions can name it by template id or by their root web-template id."""
    wt = web_template(opt)
    _REGISTERED[wt.template_id] = wt
    return wt


def template_for(flat: dict[str, Any], candidates: list[WebTemplate] | None = None) -> WebTemplate | None:
    """The web template whose root id the FLAT keys start with (among ``candidates``, else registered)."""
    roots = {k.split("/", 1)[0].split("|", 1)[0] for k in flat if isinstance(k, str) and not k.startswith("ctx")}
    for wt in (candidates if candidates is not None else list(_REGISTERED.values())):
        if roots == {wt.tree.flat_id}:
            return wt
    return None


# ------------------------------------------------------------------ ctx defaults
_LANG_TERMINOLOGY = "ISO_639-1"
_TERRITORY_TERMINOLOGY = "ISO_3166-1"
_SETTING_OTHER_CARE = ("238", "other care")
_STATE_COMPLETED = ("532", "completed")
_MATH_ACTUAL = ("640", "actual")


def _str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return repr(v)
    return str(v)


class _Defaults:
    def __init__(self, values: dict[str, Any], now: str):
        ctx = {k[4:]: v for k, v in values.items() if k.startswith("ctx/")}
        self.ctx = ctx

        def first(prefix: str) -> Any:
            return next((v for k, v in ctx.items() if k.startswith(prefix)), None)
        self.language = first("language")
        self.territory = first("territory")
        self.composer_name = first("composer_name")
        self.composer_id = first("composer_id")
        self.id_scheme = first("id_scheme")
        self.id_namespace = first("id_namespace")
        self.composer_self = _str(first("composer_self")) == "true"
        t = first("time")
        self.time = now if t is None or t == "now" else _str(t)
        self.end_time = first("end_time")
        self.history_origin = first("history_origin")
        self.action_time = first("action_time")
        self.activity_timing = first("activity_timing") or "R1"
        self.provider_name = first("provider_name")
        self.provider_id = first("provider_id")
        self.hcf_name = first("health_care_facility|name")
        self.hcf_id = first("health_care_facility|id")
        state = first("action_ism_transition_current_state")
        self.ism_state = _openehr_term(state, "current_state") if state is not None else _STATE_COMPLETED
        self.narrative = first("instruction_narrative") or "<none>"
        self.location = first("location")
        setting = first("setting")
        self.setting = _openehr_term(setting, "setting") if setting is not None else _SETTING_OTHER_CARE
        self.participations = self._participations()
        wf = {k.split("|", 1)[1].split(":")[0]: v for k, v in ctx.items() if k.startswith("work_flow_id|")}
        self.work_flow_id = None
        if wf:
            self.work_flow_id = _object_ref(wf.get("id"), wf.get("id_scheme") or self.id_scheme,
                                            wf.get("namespace") or self.id_namespace, wf.get("type"))

    def _participations(self) -> list[dict]:
        by_index: dict[int, dict[str, Any]] = {}
        for k, v in self.ctx.items():
            if not k.startswith("participation"):
                continue
            name, _, idx = k.partition(":")
            attr = name[len("participation_"):] if name.startswith("participation_") else ""
            by_index.setdefault(int(idx or 0), {})[attr] = v
        out = []
        for i in sorted(by_index):
            p = by_index[i]
            values = {f"p|{a}": v for a, v in p.items() if a}
            out.append(_participation(values, "p", self))
        return out

    def language_phrase(self) -> dict | None:
        return _code_phrase(_LANG_TERMINOLOGY, _str(self.language)) if self.language is not None else None

    def territory_phrase(self) -> dict | None:
        return _code_phrase(_TERRITORY_TERMINOLOGY, _str(self.territory)) if self.territory is not None else None


def _openehr_term(value: Any, group: str) -> tuple[str, str]:
    v = _str(value)
    if v in webtemplate.OPENEHR_TERMS:
        return v, webtemplate.OPENEHR_TERMS[v]
    for code in webtemplate._OPENEHR_GROUPS.get(group, []):
        if webtemplate.OPENEHR_TERMS[code] == v:
            return code, v
    raise FlatError(f"unknown openEHR {group} in ctx", keys=[f"ctx/{group}"])


# ------------------------------------------------------------------ RM value builders
def _code_phrase(terminology: str | None, code: str | None) -> dict:
    out: dict[str, Any] = {"_type": "CODE_PHRASE"}
    if terminology is not None:
        out["terminology_id"] = {"_type": "TERMINOLOGY_ID", "value": terminology}
    if code is not None:
        out["code_string"] = code
    return out


def _coded(value: str | None, terminology: str | None, code: str | None) -> dict:
    out: dict[str, Any] = {"_type": "DV_CODED_TEXT"}
    if value is not None:
        out["value"] = value
    out["defining_code"] = _code_phrase(terminology, code)
    return out


def _text(value: str) -> dict:
    return {"_type": "DV_TEXT", "value": value}


def _object_ref(id_: Any, scheme: Any, namespace: Any, type_: Any) -> dict:
    ref: dict[str, Any] = {"_type": "OBJECT_REF", "id": {"_type": "GENERIC_ID"}}
    if id_ is not None:
        ref["id"]["value"] = _str(id_)
    if scheme is not None:
        ref["id"]["scheme"] = _str(scheme)
    if namespace is not None:
        ref["namespace"] = _str(namespace)
    if type_ is not None:
        ref["type"] = _str(type_)
    return ref


def _participation(values: dict[str, Any], term: str, defaults: "_Defaults | None") -> dict:
    """``term|name``, ``|id``, ``|function``, ``|mode``, ``|id_scheme``, ``|id_namespace``, ``/_identifier:n``."""
    def get(attr: str) -> Any:
        return values.get(f"{term}|{attr}")
    if get("name") is not None or get("id") is not None or any(k.startswith(f"{term}/_identifier") for k in values):
        performer: dict[str, Any] = {"_type": "PARTY_IDENTIFIED"}
    elif any(k.startswith(f"{term}/relationship") for k in values):
        performer = {"_type": "PARTY_RELATED"}
    else:
        performer = {"_type": "PARTY_SELF"}
    p: dict[str, Any] = {"_type": "PARTICIPATION"}
    if get("function") is not None:
        p["function"] = _text(_str(get("function")))
    if get("mode") is not None:
        code, label = _participation_mode(_str(get("mode")))
        p["mode"] = _coded(label, "openehr", code)
    if get("id") is not None:
        ref = {"_type": "PARTY_REF", "id": {"_type": "GENERIC_ID", "value": _str(get("id"))}}
        scheme = get("id_scheme") if get("id_scheme") is not None else (defaults.id_scheme if defaults else None)
        ns = get("id_namespace") if get("id_namespace") is not None else (defaults.id_namespace if defaults else None)
        if scheme is not None:
            ref["id"]["scheme"] = _str(scheme)
        if ns is not None:
            ref["namespace"] = _str(ns)
        ref["type"] = "PARTY"
        performer["external_ref"] = ref
    if get("name") is not None and performer["_type"] != "PARTY_SELF":
        performer["name"] = _str(get("name"))
    ids = _identifiers(values, f"{term}/_identifier")
    if ids and performer["_type"] != "PARTY_SELF":
        performer["identifiers"] = ids
    p["performer"] = performer
    return p


_PARTICIPATION_MODES = {"193": "not specified", "216": "face-to-face communication",
                        "223": "interpreted face-to-face communication"}


def _participation_mode(v: str) -> tuple[str, str]:
    for code, label in _PARTICIPATION_MODES.items():
        if v in (code, label):
            return code, label
    raise FlatError("participation mode not known", keys=["ctx/participation_mode"])


def _identifiers(values: dict[str, Any], prefix: str) -> list[dict]:
    by: dict[int, dict[str, Any]] = {}
    for k, v in values.items():
        if not k.startswith(prefix):
            continue
        rest = k[len(prefix):]
        m = re.match(r"^(?::(\d+))?(?:\|(\w+))?$", rest)
        if not m:
            continue
        by.setdefault(int(m.group(1) or 0), {})[m.group(2) or "id"] = v
    out = []
    for i in sorted(by):
        d = by[i]
        ident = {"_type": "DV_IDENTIFIER"}
        for a in ("issuer", "assigner", "id", "type"):
            if d.get(a) is not None:
                ident[a] = _str(d[a])
        out.append(ident)
    return out


# ------------------------------------------------------------------ the walk
_OMIT_TYPE = {"HISTORY"}


class _Walker:
    def __init__(self, wt: WebTemplate, values: dict[str, Any], defaults: _Defaults):
        self.wt = wt
        self.values = {parse_key(k): v for k, v in values.items()}
        self.defaults = defaults
        self.consumed: set[str] = set()
        self.stack: list[tuple[Node, int | None]] = []
        self._orig: dict[str, str] = {}
        self.path_counts: dict[str, dict[tuple, int]] = {}

    # -- values
    def sub(self, values: dict[Key, Any], prefix: tuple) -> dict[Key, Any]:
        return {k: v for k, v in values.items() if k.starts_with(prefix)}

    def get(self, values: dict[Key, Any], path: tuple, attr: str | None) -> tuple[Key, Any] | None:
        for k, v in values.items():
            if k.is_exactly(path, attr):
                return k, v
        return None

    def take(self, values: dict[Key, Any], path: tuple, attr: str | None) -> Any:
        hit = self.get(values, path, attr)
        if hit is None or hit[1] is None or (isinstance(hit[1], str) and not hit[1].strip()):
            return None
        self.consumed.add(hit[0].raw)
        return hit[1]

    # -- structure
    def run(self) -> dict:
        root = self.wt.tree
        term = ((root.flat_id, None),)
        values = self.sub(self.values, term)
        comp = self.skeleton(root)
        comp["archetype_details"] = {"archetype_id": {"value": root.node_id},
                                     "template_id": {"value": self.wt.template_id}, "rm_version": "1.0.4"}
        self.stack.append((root, None))
        self.handle(root, comp, values, term)
        return comp

    def skeleton(self, node: Node) -> dict:
        t = node.rm_type
        obj: dict[str, Any] = {"_type": t}
        if t in webtemplate.LOCATABLE_TYPES:
            name_node = node.child("name")
            name = None
            if name_node is not None and name_node.rm_type == "DV_CODED_TEXT" and name_node.min > 0:
                code = next((i for i in name_node.inputs if i.suffix == "code" and len(i.list) == 1), None)
                if code is not None:
                    name = _coded(code.list[0].get("label"), code.terminology, code.list[0].get("value"))
            obj["name"] = name or _text(node.name)
            obj["archetype_node_id"] = node.node_id
        if t in ("OBSERVATION", "EVALUATION", "INSTRUCTION", "ACTION", "ADMIN_ENTRY"):
            obj["encoding"] = _code_phrase("IANA_character-sets", "UTF-8")
        if t == "COMPOSITION":
            cat = node.child("category")
            code = next((i for i in (cat.inputs if cat is not None else []) if i.suffix == "code" and len(i.list) == 1),
                        None)
            if cat is not None and cat.min > 0 and code is not None:
                obj["category"] = _coded(code.list[0].get("label"), code.terminology, code.list[0].get("value"))
        if t == "DV_INTERVAL":
            obj["lower_included"] = True
            obj["upper_included"] = True
        return obj

    def expanded_children(self, node: Node) -> list[Node]:
        kids = list(node.children)
        if node.rm_type == "ACTION":
            first = next((i for i, c in enumerate(kids) if c.rm_type == "ISM_TRANSITION"), None)
            if first is not None:
                kids = kids[:first + 1] + [c for c in kids[first + 1:] if c.rm_type != "ISM_TRANSITION"]
        if node.rm_type == "ELEMENT" and webtemplate.is_choice_dv_text_and_coded(node):
            merged = webtemplate._merge_dv_text(node)
            return [c for c in kids if c.id not in ("coded_text_value", "text_value")] + [merged]
        add: list[Node] = []
        out = []
        for c in kids:
            if c.rm_type == "DV_TEXT" and (len(kids) <= 1 or not any(
                    n is not c and n.aql_path == c.aql_path and n.rm_type == "DV_CODED_TEXT" for n in kids)):
                add.append(_clone(c, "DV_CODED_TEXT"))
            if c.rm_type == "PARTY_PROXY":
                add += [_clone(c, "PARTY_SELF"), _clone(c, "PARTY_IDENTIFIED"), _party_related(c)]
                continue
            if c.rm_type == "PARTY_IDENTIFIED" and not any(
                    n is not c and n.aql_path == c.aql_path and n.rm_type == "PARTY_RELATED" for n in kids):
                add.append(_party_related(c))
            if c.rm_type == "EVENT":
                iv = _clone(c, "INTERVAL_EVENT")
                iv.children += [Node("width", "width", "DV_DURATION", 1, 1, aql_path=iv.aql_path + "/width"),
                                Node("math_function", "math_function", "DV_CODED_TEXT", 1, 1,
                                     aql_path=iv.aql_path + "/math_function"),
                                Node("sample_count", "sample_count", "LONG", 0, 1,
                                     aql_path=iv.aql_path + "/sample_count")]
                for x in iv.children[-3:]:
                    x.inputs = [Input("code"), Input("value")] if x.id == "math_function" else []
                add += [iv, _clone(c, "POINT_EVENT")]
                continue
            out.append(c)
        return out + add

    def name_path(self, chain: list[tuple[Node, int | None]]) -> tuple:
        """The FLAT path of the last node of ``chain`` (root first), as openEHR_SDK FlatHelper.buildNamePath
        makes it: folded nodes add nothing, a folded ELEMENT's value takes the ELEMENT's id, and two
        different nodes that would get the same path are told apart by a number ('comment', 'comment2')
        in the order the walk first meets them."""
        if chain and chain[-1][0].rm_type == "ELEMENT" and len(chain) > 1 and skip(chain[-1][0], chain[-2][0]):
            value = next((x for x in chain[-1][0].children if x.id.endswith("value")), None)
            if value is not None:
                chain = chain + [(value, None)]
        segs: list[tuple[str, int | None]] = []
        id_path: list[str] = []
        parent: Node | None = None
        parent_count: int | None = None
        for n, count in chain:
            skipped = skip(n, parent)
            parent_is_folded_element = parent is not None and parent.rm_type == "ELEMENT" and skip(parent, None)
            node, node_count = (parent, parent_count) if parent_is_folded_element else (n, count)
            id_path.append(node.flat_id)
            if not skipped:
                prefix = _format(segs)
                key = f"{prefix}/{node.id}" if prefix else node.id
                counts = self.path_counts.setdefault(key, {})
                pc = counts.setdefault(tuple(id_path), 1 + max(counts.values(), default=0))
                name = node.id + (str(pc) if pc != 1 else "")
                segs.append((name, node_count if node.max != 1 and node_count is not None else None))
                full = self.path_counts.setdefault(_format(segs), {})
                full.setdefault(tuple(id_path), 1 + max(full.values(), default=0))
            parent, parent_count = n, count
        return tuple(segs)

    def handle(self, node: Node, obj: dict, values: dict[Key, Any], term: tuple) -> None:
        if node.rm_type in PATHABLE_TYPES or node.rm_type in ("ELEMENT", "DV_INTERVAL"):
            kids = self.expanded_children(node)
            groups: dict[str, list[Node]] = {}
            for c in kids:
                groups.setdefault(c.aql_path, []).append(c)
            for group in groups.values():
                is_choice = len({c.rm_type for c in group}) > 1
                multi = any((c.max == -1 or c.max > 1) if node.rm_type != "ELEMENT" else c.id == "link"
                            for c in group)
                if not multi:
                    for c in group:
                        self.child(node, obj, values, term, c, None, is_choice)
                else:
                    for i in range(self.size(values, term, group[0], node)):
                        for c in group:
                            if self.child(node, obj, values, term, c, i, is_choice):
                                break
        else:
            self.leaf(node, obj, values, term)
        self.post(node, obj, values, term)
        self.insert_defaults(node, obj)

    def size(self, values: dict[Key, Any], term: tuple, child: Node, parent: Node) -> int:
        n = len(term)
        counts = [k.segs[n][1] or 0 for k in values if len(k.segs) > n and k.starts_with(term)
                  and k.segs[n][0] == child.flat_id]
        return max(counts) + 1 if counts else 0

    def child(self, parent: Node, obj: dict, values: dict[Key, Any], term: tuple, c: Node, index: int | None,
              is_choice: bool) -> bool:
        if (not c.children and skip(c, parent)) or non_mandatory(c, parent):
            return False
        chain = self.stack + [(c, index)]
        path = self.name_path(chain)
        sub = self.sub(values, path)
        if is_choice and sub and not self.matches(c, sub, path):
            sub = {}
        if not sub:
            return False
        child_obj = self.skeleton(c) if c.rm_type not in ("STRING", "LONG", "BOOLEAN") else {"_type": c.rm_type}
        self.stack.append((c, index))
        try:
            self.handle(c, child_obj, sub, path)
        finally:
            self.stack.pop()
        self.insert(parent, obj, c, child_obj)
        return True

    def matches(self, c: Node, sub: dict[Key, Any], path: tuple) -> bool:
        t = c.rm_type
        if t == "POINT_EVENT":
            return not any(k.starts_with(path + (("math_function", None),)) for k in sub)
        if t == "INTERVAL_EVENT":
            return any(k.starts_with(path + (("math_function", None),)) for k in sub)
        if t in ("PARTY_SELF", "PARTY_IDENTIFIED", "PARTY_RELATED"):
            return _party_kind(sub, path) == t
        if t in PATHABLE_TYPES or t in ("ELEMENT", "DV_INTERVAL"):
            rest = dict(sub)
            for n in c.children:
                # as openEHR_SDK does it: the child's path computed without ``c`` on the stack
                p = self.name_path(self.stack + [(n, None)])
                rest = {k: v for k, v in rest.items() if not k.starts_with(p)}
            return not rest
        if t == "DV_CODED_TEXT":
            return any(k.is_exactly(path, "code") for k in sub)
        if t == "DV_TEXT":
            return not any(k.is_exactly(path, "code") for k in sub)
        return True

    def insert(self, parent: Node, obj: dict, c: Node, child_obj: Any) -> None:
        attr = webtemplate._last_attribute(c.aql_path[len(parent.aql_path):] or c.aql_path)
        if attr == "workflow_id":
            attr = "work_flow_id"
        multiple = webtemplate.rm_attributes(obj.get("_type", parent.rm_type)).get(attr, (None, False))[1]
        if c.rm_type in ("STRING", "LONG", "BOOLEAN"):
            child_obj = child_obj.get("value")
            if child_obj is None:
                return
        if multiple:
            obj.setdefault(attr, []).append(child_obj)
        else:
            obj[attr] = child_obj

    # -- leaves (openEHR_SDK rmunmarshaller)
    def leaf(self, node: Node, obj: dict, values: dict[Key, Any], term: tuple) -> None:
        t = obj["_type"]
        take = self.take

        def put(key: str, v: Any, conv=lambda x: x) -> None:
            if v is not None:
                obj[key] = conv(v)

        if t == "DV_CODED_TEXT" and any(k.attr == "other" for k in values):
            obj.clear()
            obj["_type"] = t = "DV_TEXT"
            put("value", take(values, term, "other"), _str)
            return
        if t == "DV_TEXT":
            put("value", take(values, term, None), _str)
            if "value" not in obj:
                put("value", take(values, term, "value"), _str)
            put("formatting", take(values, term, "formatting"), _str)
        elif t == "DV_CODED_TEXT":
            self.coded_text(node, obj, values, term)
        elif t == "CODE_PHRASE":
            code = take(values, term, "code")
            terminology = take(values, term, "terminology")
            if code is None:
                code = take(values, term, None)
            if terminology is None:
                terminology = next((i.terminology for i in node.inputs if i.suffix == "code" and i.terminology), None)
            obj.update(_code_phrase(_str(terminology) if terminology is not None else None,
                                    _str(code) if code is not None else None))
        elif t == "DV_QUANTITY":
            put("magnitude", take(values, term, "magnitude"), float)
            put("units", take(values, term, "unit"), _str)
            put("precision", take(values, term, "precision"), int)
            if "magnitude" not in obj and "units" not in obj:
                raw = take(values, term, None)
                if raw is not None:
                    mag, _, unit = _str(raw).partition(",")
                    obj["magnitude"], obj["units"] = float(mag), unit.strip()
        elif t == "DV_COUNT":
            v = take(values, term, None)
            if v is None:
                v = take(values, term, "magnitude")
            put("magnitude", v, lambda x: int(float(x)))
        elif t == "DV_PROPORTION":
            put("numerator", take(values, term, "numerator"), float)
            put("denominator", take(values, term, "denominator"), float)
            put("type", take(values, term, "type"), int)
            put("precision", take(values, term, "precision"), int)
        elif t == "DV_ORDINAL":
            self.ordinal(node, obj, values, term)
        elif t == "DV_BOOLEAN":
            put("value", take(values, term, None), lambda x: x if isinstance(x, bool) else _str(x) == "true")
        elif t in ("DV_DATE_TIME", "DV_DATE", "DV_TIME", "DV_DURATION", "DV_URI", "DV_EHR_URI", "STRING", "LONG"):
            v = take(values, term, None)
            if v is None:
                v = take(values, term, "value")
            put("value", v, (lambda x: int(x)) if t == "LONG" else _str)
        elif t == "DV_PARSABLE":
            v = take(values, term, None)
            if v is None:
                v = take(values, term, "value")
            put("value", v, _str)
            put("formalism", take(values, term, "formalism"), _str)
        elif t == "DV_IDENTIFIER":
            v = take(values, term, "id")
            if v is None:
                v = take(values, term, None)
            put("issuer", take(values, term, "issuer"), _str)
            put("assigner", take(values, term, "assigner"), _str)
            put("id", v, _str)
            put("type", take(values, term, "type"), _str)
        elif t in ("PARTY_IDENTIFIED", "PARTY_RELATED", "PARTY_SELF"):
            self.party(obj, values, term)
        elif t == "DV_MULTIMEDIA":
            put("uri", take(values, term, None), lambda x: {"_type": "DV_URI", "value": _str(x)})
            put("media_type", take(values, term, "mediatype"), lambda x: _code_phrase("IANA_media-types", _str(x)))
            put("alternate_text", take(values, term, "alternatetext"), _str)
            put("size", take(values, term, "size"), int)
        else:
            for k in values:
                if k.is_exactly(term, None):
                    raise FlatError(f"FLAT values for {t} are not supported", keys=[k.raw],
                                    template_id=self.wt.template_id)

    def coded_text(self, node: Node, obj: dict, values: dict[Key, Any], term: tuple) -> None:
        take = self.take
        value = take(values, term, "value")
        code = take(values, term, "code")
        terminology = take(values, term, "terminology")
        value = _str(value) if value is not None else None
        code = _str(code) if code is not None else None
        listed = [v for i in node.inputs if i.suffix == "code" for v in i.list]
        if code is None and value is None:
            raw = take(values, term, None)
            if raw is not None:
                raw = _str(raw)
                hit = next((v for v in listed if v.get("value") == raw), None) or \
                    next((v for v in listed if v.get("label") == raw), None)
                if hit is not None:
                    value, code = hit.get("label"), hit.get("value")
        elif code is None:
            raw = take(values, term, None)
            if raw is not None:
                code = _str(raw)
        if terminology is None:
            terminology = next((i.terminology for i in node.inputs if i.suffix == "code" and i.terminology), None)
        hit = next((v for v in listed if v.get("value") == code), None) if code is not None else None
        if hit is None and code is None and value is not None:
            hit = next((v for v in listed if v.get("label") == value), None)
        if hit is not None:
            value, code = hit.get("label"), hit.get("value")
        if code is not None:
            for k in values:
                if k.attr == code:
                    self.consumed.add(k.raw)
        obj.clear()
        obj.update(_coded(value, _str(terminology) if terminology is not None else None, code))
        fmt = take(values, term, "formatting")
        if fmt is not None:
            obj["formatting"] = _str(fmt)

    def ordinal(self, node: Node, obj: dict, values: dict[Key, Any], term: tuple) -> None:
        take = self.take
        code = take(values, term, "code")
        value = take(values, term, "value")
        ordinal = take(values, term, "ordinal")
        terminology = take(values, term, "terminology")
        if code is None and value is None and ordinal is None:
            code = take(values, term, None)
        listed = [v for i in node.inputs for v in i.list]
        hit = None
        if code is not None:
            hit = next((v for v in listed if v.get("value") == _str(code)), None)
        elif ordinal is not None:
            hit = next((v for v in listed if str(v.get("ordinal")) == _str(ordinal)), None)
        elif value is not None:
            hit = next((v for v in listed if v.get("label") == _str(value)), None)
        if hit is not None:
            code, value, ordinal = hit.get("value"), hit.get("label"), hit.get("ordinal")
        terminology = terminology if terminology is not None else "local"
        obj["value"] = int(ordinal) if ordinal is not None else None
        obj["symbol"] = _coded(_str(value) if value is not None else None, _str(terminology),
                               _str(code) if code is not None else None)
        if obj["value"] is None:
            del obj["value"]

    def party(self, obj: dict, values: dict[Key, Any], term: tuple) -> None:
        t = obj["_type"]
        take = self.take
        name = take(values, term, "name")
        id_ = take(values, term, "id")
        scheme = take(values, term, "id_scheme")
        namespace = take(values, term, "id_namespace")
        take(values, term, "_type")
        if id_ is not None:
            d = self.defaults
            ref = {"_type": "PARTY_REF", "id": {"_type": "GENERIC_ID", "value": _str(id_)}}
            sc = scheme if scheme is not None else d.id_scheme
            ns = namespace if namespace is not None else d.id_namespace
            if sc is not None:
                ref["id"]["scheme"] = _str(sc)
            if ns is not None:
                ref["namespace"] = _str(ns)
            ref["type"] = "PARTY"
            obj["external_ref"] = ref
        if t != "PARTY_SELF" and name is not None:
            obj["name"] = _str(name)
        if t != "PARTY_SELF":
            plain = {k.raw: v for k, v in values.items()}
            ids = _identifiers(plain, "/".join(f"{n}:{i}" if i is not None else n for n, i in term) + "/_identifier")
            if ids:
                obj["identifiers"] = ids
                for k in values:
                    if "/_identifier" in k.raw:
                        self.consumed.add(k.raw)

    # -- postprocessors (openEHR_SDK umarshal.postprocessor)
    def post(self, node: Node, obj: dict, values: dict[Key, Any], term: tuple) -> None:
        t = obj.get("_type")
        # keys spelled with this node's indices (a key may leave ':0' out): normalised -> as written
        raw: dict[str, Any] = {}
        self._orig = {}
        for k, v in values.items():
            norm = _format(term + k.segs[len(term):]) + (f"|{k.attr}" if k.attr is not None else "")
            raw[norm] = v
            self._orig[norm] = k.raw
        pre = _format(term)

        def take_raw(key: str) -> Any:
            if key in raw and raw[key] is not None and _str(raw[key]).strip():
                self._consume(key)
                return raw[key]
            return None

        parent = self.stack[-2][0] if len(self.stack) > 1 else None
        if t in webtemplate.LOCATABLE_TYPES:
            if node.node_id and node.node_id.startswith("openEHR-") and t != "COMPOSITION":
                obj["archetype_details"] = {"archetype_id": {"value": node.node_id}, "rm_version": "1.0.4"}
            self.normalise(obj)
        if t in webtemplate.LOCATABLE_TYPES and (t == "ELEMENT" or not skip(node, parent)):
            uid = take_raw(f"{pre}/_uid")
            if uid is not None:
                obj["uid"] = {"_type": "HIER_OBJECT_ID", "value": _str(uid)}
            links = self.indexed(raw, f"{pre}/_link")
            for i, d in links:
                link = {"_type": "LINK"}
                if d.get("meaning") is not None:
                    link["meaning"] = _text(_str(d["meaning"]))
                if d.get("type") is not None:
                    link["type"] = _text(_str(d["type"]))
                if d.get("target") is not None:
                    link["target"] = {"_type": "DV_EHR_URI", "value": _str(d["target"])}
                obj.setdefault("links", []).append(link)
            name_vals = {k: v for k, v in raw.items() if k.startswith(f"{pre}/_name")}
            if name_vals:
                n = Node("name", "name", "DV_CODED_TEXT" if f"{pre}/_name|code" in name_vals else "DV_TEXT")
                nobj = {"_type": n.rm_type}
                self.leaf(n, nobj, {parse_key(self._orig.get(k, k)): v for k, v in name_vals.items()},
                          term + (("_name", None),))
                obj["name"] = nobj
        if t in ("OBSERVATION", "EVALUATION", "INSTRUCTION", "ACTION", "ADMIN_ENTRY"):
            for a in ("code", "terminology"):
                self._consume(f"{pre}/encoding|{a}")
            subject = {k: v for k, v in values.items() if k.starts_with(term + (("subject", None),))}
            if _party_kind(subject, term + (("subject", None),)) == "PARTY_SELF":
                obj["subject"] = {"_type": "PARTY_SELF"}
            prov = {k: v for k, v in raw.items() if k.startswith(f"{pre}/_provider")}
            if prov:
                p = _participation(prov, f"{pre}/_provider", self.defaults)["performer"]
                obj["provider"] = p
                self._consume(*prov)
            for i, d in self.indexed_raw(raw, f"{pre}/_other_participation"):
                obj.setdefault("other_participations", []).append(
                    _participation(d, f"{pre}/_other_participation:{i}", self.defaults))
            wf = self.ref_values(raw, f"{pre}/_work_flow_id")
            if wf:
                obj["work_flow_id"] = wf
        if t in ("OBSERVATION", "EVALUATION", "INSTRUCTION", "ACTION"):
            g = self.ref_values(raw, f"{pre}/_guideline_id")
            if g:
                obj["guideline_id"] = g
        if t == "EVENT_CONTEXT":
            loc = take_raw(f"{pre}/_location")
            if loc is not None:
                obj["location"] = _str(loc)
            end = take_raw(f"{pre}/_end_time")
            if end is not None:
                obj["end_time"] = {"_type": "DV_DATE_TIME", "value": _str(end)}
            hcf = {k: v for k, v in raw.items() if k.startswith(f"{pre}/_health_care_facility")}
            if hcf:
                p = _participation(hcf, f"{pre}/_health_care_facility", None)["performer"]
                if p["_type"] == "PARTY_SELF":
                    raise FlatError("health care facility must be a PARTY_IDENTIFIED", keys=list(hcf))
                obj["health_care_facility"] = p
                self._consume(*hcf)
            for i, d in self.indexed_raw(raw, f"{pre}/_participation"):
                obj.setdefault("participations", []).append(
                    _participation(d, f"{pre}/_participation:{i}", self.defaults))
            self._consume(f"{pre}/setting|238", f"{pre}/setting|")
            setting = obj.get("setting")
            if setting is not None and "terminology_id" not in setting.get("defining_code", {}):
                setting["defining_code"]["terminology_id"] = {"_type": "TERMINOLOGY_ID", "value": "openehr"}
                setting["defining_code"] = _code_phrase("openehr", setting["defining_code"].get("code_string"))
        if t == "HISTORY":
            origin = take_raw(f"{pre}/history_origin")
            if origin is not None:
                obj["origin"] = {"_type": "DV_DATE_TIME", "value": _str(origin)}
            if "origin" not in obj:
                times = sorted((e.get("time") or {}).get("value") for e in obj.get("events", [])
                               if (e.get("time") or {}).get("value"))
                if times:
                    obj["origin"] = {"_type": "DV_DATE_TIME", "value": _earliest(times)}
        if t == "ISM_TRANSITION":
            if "current_state" not in obj and "careflow_step" in obj:
                step = node.child("careflow_step")
                code = obj["careflow_step"].get("defining_code", {}).get("code_string")
                for i in (step.inputs if step is not None else []):
                    for v in i.list:
                        if v.get("value") == code and v.get("currentStates"):
                            c = v["currentStates"][0]
                            obj["current_state"] = _coded(webtemplate.OPENEHR_TERMS.get(c), "openehr", c)
            for i, d in self.indexed(raw, f"{pre}/_reason"):
                obj.setdefault("reason", []).append(
                    _coded(_str(d.get("value")) if d.get("value") is not None else None, d.get("terminology"),
                           _str(d["code"])) if d.get("code") is not None else _text(_str(d.get("") or d.get("value"))))
        if t == "ACTION":
            idet = {k: v for k, v in raw.items() if k.startswith(f"{pre}/_instruction_details")}
            if idet:
                self._consume(*idet)
                det: dict[str, Any] = {"_type": "INSTRUCTION_DETAILS"}
                get = lambda a: idet.get(f"{pre}/_instruction_details|{a}")  # noqa: E731
                if get("composition_uid") is not None or get("path") is not None:
                    det["instruction_id"] = {"_type": "LOCATABLE_REF",
                                             "id": {"_type": "HIER_OBJECT_ID", "value": _str(get("composition_uid"))},
                                             "namespace": "local", "type": "INSTRUCTION",
                                             "path": _str(get("path") or "")}
                if get("activity_id") is not None:
                    det["activity_id"] = _str(get("activity_id"))
                obj["instruction_details"] = det
        if t == "INSTRUCTION":
            exp = take_raw(f"{pre}/_expiry_time")
            if exp is not None:
                obj["expiry_time"] = {"_type": "DV_DATE_TIME", "value": _str(exp)}
            wf = {k: v for k, v in raw.items() if k.startswith(f"{pre}/_wf_definition")}
            if wf:
                self._consume(*wf)
                obj["wf_definition"] = {"_type": "DV_PARSABLE",
                                        "value": _str(wf.get(f"{pre}/_wf_definition|value", wf.get(f"{pre}/_wf_definition", ""))),
                                        "formalism": _str(wf.get(f"{pre}/_wf_definition|formalism", ""))}
        if t == "ELEMENT":
            nf = {k: v for k, v in raw.items() if k.startswith(f"{pre}/_null_flavour")}
            if nf:
                self._consume(*nf)
                code = nf.get(f"{pre}/_null_flavour|code")
                value = nf.get(f"{pre}/_null_flavour|value")
                code = _str(code) if code is not None else None
                obj["null_flavour"] = _coded(webtemplate.OPENEHR_TERMS.get(code, value), "openehr", code)
        if t in ("DV_TEXT", "DV_CODED_TEXT"):
            for i, d in self.indexed_mapping(raw, f"{pre}/_mapping"):
                tm: dict[str, Any] = {"_type": "TERM_MAPPING"}
                if d.get("match") is not None:
                    tm["match"] = _str(d["match"])
                tm["target"] = _code_phrase(_str(d["target|terminology"]) if d.get("target|terminology") is not None
                                            else None, _str(d["target|code"]) if d.get("target|code") is not None
                                            else None)
                if d.get("target|preferred_term") is not None:
                    tm["target"]["preferred_term"] = _str(d["target|preferred_term"])
                if d.get("purpose|code") is not None or d.get("purpose|value") is not None:
                    tm["purpose"] = _coded(d.get("purpose|value"), d.get("purpose|terminology"), d.get("purpose|code"))
                obj.setdefault("mappings", []).append(tm)

    def _consume(self, *keys: str) -> None:
        for k in keys:
            self.consumed.add(self._orig.get(k, k))

    def normalise(self, obj: dict) -> None:
        t = obj.get("_type")

        def empty_struct(s: Any) -> bool:
            return not isinstance(s, dict) or not any(x is not None for x in s.get("items", s.get("rows", [])) or
                                                      ([s["item"]] if s.get("item") else []))
        if t in ("OBSERVATION", "EVALUATION", "INSTRUCTION", "ACTION") and "protocol" in obj and empty_struct(obj["protocol"]):
            del obj["protocol"]
        if t == "OBSERVATION":
            for a in ("state", "data"):
                if a in obj and not obj[a].get("events"):
                    del obj[a]
        if t == "ACTION" and "description" in obj and empty_struct(obj["description"]):
            del obj["description"]
        if t in ("EVALUATION", "ADMIN_ENTRY") and "data" in obj and empty_struct(obj["data"]):
            del obj["data"]
        if t in EVENT_TYPES:
            for a in ("state", "data"):
                if a in obj and empty_struct(obj[a]):
                    del obj[a]
        if t in ("ITEM_TREE", "ITEM_LIST", "CLUSTER") and "items" in obj:
            obj["items"] = [i for i in obj["items"] if _not_empty_item(i)]
            if not obj["items"]:
                del obj["items"]
        if t == "ITEM_SINGLE" and "item" in obj and not _not_empty_item(obj["item"]):
            del obj["item"]

    def post_context(self, obj: dict) -> None:
        if "other_context" in obj and not [i for i in obj["other_context"].get("items", []) if _not_empty_item(i)]:
            del obj["other_context"]

    def indexed(self, raw: dict[str, Any], prefix: str) -> list[tuple[int, dict[str, Any]]]:
        """``prefix:n|attr`` keys -> [(n, {attr: value})]; a key without ``|`` has attr ''."""
        by: dict[int, dict[str, Any]] = {}
        for k, v in raw.items():
            if not k.startswith(prefix):
                continue
            m = re.match(r"^(?::(\d+))?(?:\|(.*))?$", k[len(prefix):])
            if not m:
                continue
            self._consume(k)
            by.setdefault(int(m.group(1) or 0), {})[m.group(2) or ""] = v
        return sorted(by.items())

    def indexed_raw(self, raw: dict[str, Any], prefix: str) -> list[tuple[int, dict[str, Any]]]:
        by: dict[int, dict[str, Any]] = {}
        for k, v in raw.items():
            if not k.startswith(prefix):
                continue
            m = re.match(r"^(?::(\d+))?([/|].*)?$", k[len(prefix):])
            if not m:
                continue
            self._consume(k)
            i = int(m.group(1) or 0)
            by.setdefault(i, {})[f"{prefix}:{i}{m.group(2) or ''}"] = v
        return sorted(by.items())

    def indexed_mapping(self, raw: dict[str, Any], prefix: str) -> list[tuple[int, dict[str, Any]]]:
        by: dict[int, dict[str, Any]] = {}
        for k, v in raw.items():
            if not k.startswith(prefix):
                continue
            m = re.match(r"^(?::(\d+))?(?:/(\w+))?(?:\|(\w+))?$", k[len(prefix):])
            if not m:
                continue
            self._consume(k)
            key = "|".join(x for x in (m.group(2), m.group(3)) if x)
            by.setdefault(int(m.group(1) or 0), {})[key] = v
        return sorted(by.items())

    def ref_values(self, raw: dict[str, Any], prefix: str) -> dict | None:
        d = {k[len(prefix) + 1:]: v for k, v in raw.items() if k.startswith(prefix + "|")}
        if not d:
            return None
        self._consume(*(k for k in raw if k.startswith(prefix + "|")))
        return _object_ref(d.get("id"), d.get("id_scheme"), d.get("namespace"), d.get("type"))

    # -- defaults (openEHR_SDK defaultinserter)
    def insert_defaults(self, node: Node, obj: dict) -> None:
        t = obj.get("_type")
        d = self.defaults
        if t in ("OBSERVATION", "EVALUATION", "INSTRUCTION", "ACTION", "ADMIN_ENTRY"):
            if _empty(obj.get("language")) and d.language is not None:
                obj["language"] = d.language_phrase()
            if _empty(obj.get("provider")) and (d.provider_id is not None or d.provider_name is not None):
                obj["provider"] = _party_identified(d.provider_name, d.provider_id, d)
            if not obj.get("other_participations") and d.participations:
                obj["other_participations"] = [json.loads(json.dumps(p)) for p in d.participations]
            if "work_flow_id" not in obj and d.work_flow_id is not None:
                obj["work_flow_id"] = dict(d.work_flow_id)
        if t == "COMPOSITION":
            if _empty(obj.get("language")) and d.language is not None:
                obj["language"] = d.language_phrase()
            if _empty(obj.get("territory")) and d.territory is not None:
                obj["territory"] = d.territory_phrase()
            if _empty(obj.get("composer")) and d.composer_self:
                obj["composer"] = {"_type": "PARTY_SELF"}
            if (obj.get("composer") or {}).get("_type") == "PARTY_SELF" and d.composer_id is not None:
                obj["composer"] = _party_identified(d.composer_name, d.composer_id, d)
            if _empty(obj.get("composer")) and (d.composer_name is not None or d.composer_id is not None):
                obj["composer"] = _party_identified(d.composer_name, d.composer_id, d)
            ctx = obj.setdefault("context", {"_type": "EVENT_CONTEXT"})
            self.context_defaults(ctx)
        if t == "OBSERVATION":
            for a in ("data", "state"):
                h = obj.get(a)
                if h is None:
                    continue
                if _empty(h.get("origin")):
                    h["origin"] = {"_type": "DV_DATE_TIME", "value": _str(d.history_origin or d.time)}
                for e in h.get("events", []):
                    if _empty(e.get("time")):
                        e["time"] = {"_type": "DV_DATE_TIME", "value": h["origin"]["value"]}
        if t == "ACTION":
            if _empty(obj.get("time")):
                obj["time"] = {"_type": "DV_DATE_TIME", "value": _str(d.action_time or d.time)}
            ism = obj.setdefault("ism_transition", {"_type": "ISM_TRANSITION"})
            if _empty_coded(ism.get("current_state")):
                ism["current_state"] = _coded(d.ism_state[1], "openehr", d.ism_state[0])
        if t == "ACTIVITY":
            if _empty(obj.get("timing")):
                obj["timing"] = {"_type": "DV_PARSABLE", "value": _str(d.activity_timing), "formalism": "timing"}
            if obj["timing"].get("formalism") is None:
                obj["timing"]["formalism"] = "timing"
            obj.setdefault("action_archetype_id", "/.*/")
        if t == "INSTRUCTION" and _empty(obj.get("narrative")):
            obj["narrative"] = _text(_str(d.narrative))
        if t == "INTERVAL_EVENT" and _empty_coded(obj.get("math_function")):
            obj["math_function"] = _coded(_MATH_ACTUAL[1], "openehr", _MATH_ACTUAL[0])
        if t == "EVENT_CONTEXT":
            self.context_defaults(obj)
            self.post_context(obj)

    def context_defaults(self, ctx: dict) -> None:
        d = self.defaults
        if _empty(ctx.get("start_time")) and d.time is not None:
            ctx["start_time"] = {"_type": "DV_DATE_TIME", "value": _str(d.time)}
        if _empty(ctx.get("end_time")) and d.end_time is not None:
            ctx["end_time"] = {"_type": "DV_DATE_TIME", "value": _str(d.end_time)}
        if _empty(ctx.get("health_care_facility")) and (d.hcf_name is not None or d.hcf_id is not None):
            ctx["health_care_facility"] = _party_identified(d.hcf_name, d.hcf_id, d)
        if ctx.get("location") is None and d.location is not None:
            ctx["location"] = _str(d.location)
        if _empty_coded(ctx.get("setting")):
            ctx["setting"] = _coded(d.setting[1], "openehr", d.setting[0])
        if not ctx.get("participations") and d.participations:
            ctx["participations"] = [json.loads(json.dumps(p)) for p in d.participations]


def _earliest(times: list[str]) -> str:
    def key(t: str):
        try:
            dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
            return (0, dt.timestamp() if dt.tzinfo else dt.replace(tzinfo=timezone.utc).timestamp(), t)
        except ValueError:
            return (1, 0.0, t)
    return sorted(times, key=key)[0]


def _party_identified(name: Any, id_: Any, d: _Defaults) -> dict:
    p: dict[str, Any] = {"_type": "PARTY_IDENTIFIED"}
    if id_ is not None:
        ref = {"_type": "PARTY_REF", "id": {"_type": "GENERIC_ID", "value": _str(id_)}}
        if d.id_scheme is not None:
            ref["id"]["scheme"] = _str(d.id_scheme)
        if d.id_namespace is not None:
            ref["namespace"] = _str(d.id_namespace)
        ref["type"] = "PARTY"
        p["external_ref"] = ref
    if name is not None:
        p["name"] = _str(name)
    return p


def _empty(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, list):
        return all(_empty(x) for x in v)
    if isinstance(v, dict):
        t = v.get("_type")
        if t == "CODE_PHRASE":
            return not v.get("code_string")
        if t == "DV_CODED_TEXT":
            return _empty(v.get("defining_code"))
        if t in ("DV_TEXT", "DV_DATE_TIME", "DV_URI"):
            return v.get("value") is None
        if t == "PARTY_IDENTIFIED":
            return v.get("name") is None and not v.get("identifiers")
        if t == "DV_PARSABLE":
            return v.get("value") is None and v.get("formalism") is None
        if t == "ISM_TRANSITION":
            return _empty(v.get("current_state"))
    return False


def _empty_coded(v: Any) -> bool:
    return v is None or _empty(v)


def _not_empty_item(item: Any) -> bool:
    if not isinstance(item, dict):
        return item is not None
    if item.get("_type") == "ELEMENT":
        return item.get("value") is not None or item.get("null_flavour") is not None
    if item.get("_type") == "CLUSTER":
        return bool(item.get("items"))
    return True


def _clone(c: Node, rm_type: str) -> Node:
    return c.clone(rm_type)


def _party_related(c: Node) -> Node:
    n = _clone(c, "PARTY_RELATED")
    n.children.append(Node("relationship", "relationship", "DV_CODED_TEXT", 1, 1,
                           aql_path=n.aql_path + "/relationship", inputs=[Input("code"), Input("value")]))
    return n


def _party_kind(values: dict[Key, Any], path: tuple) -> str:
    """Which PARTY_PROXY subtype the FLAT keys under ``path`` describe (openEHR_SDK FlatHelper.isExactly*)."""
    typ = next((v for k, v in values.items() if k.is_exactly(path, "_type")), None)
    if typ is not None and _str(typ).strip('"') == "PARTY_SELF":
        return "PARTY_SELF"
    if any(k.starts_with(path + (("relationship", None),)) for k in values):
        return "PARTY_RELATED"
    if any(k.is_exactly(path, "name") or k.is_exactly(path, "id") or k.starts_with(path + (("_identifier", None),))
           or (len(k.segs) > len(path) and k.starts_with(path) and k.segs[len(path)][0] == "_identifier")
           for k in values):
        return "PARTY_IDENTIFIED"
    return "PARTY_SELF"


# ------------------------------------------------------------------ skip rules (openEHR_SDK FlatHelper)
def skip(node: Node, parent: Node | None) -> bool:
    if node.archetype_slot:
        return True
    if parent is not None and non_mandatory(node, parent):
        return True
    if parent is not None and parent.rm_type == "ISM_TRANSITION" and parent.id != "ism_transition":
        return True
    if node.rm_type in webtemplate.STRUCTURE_TYPES:
        return True
    if parent is not None and node.rm_type in EVENT_TYPES:
        paths = {c.aql_path for c in parent.children if c.rm_type in EVENT_TYPES}
        return len(paths) == 1 and node.max == 1
    if node.rm_type == "ELEMENT":
        kids = [c.rm_type for c in node.children if c.name not in ("name", "null_flavour", "feeder_audit")]
        return any(c.id == "value" for c in node.children) or (
            len(kids) == 2 and set(kids) == {"DV_TEXT", "DV_CODED_TEXT"})
    if node.rm_type == "CODE_PHRASE" and parent is not None:
        return parent.rm_type == "DV_CODED_TEXT"
    if node.rm_type == "ISM_TRANSITION":
        return node.id != "ism_transition" or node.optional_id_number is not None
    return False


def non_mandatory(node: Node, parent: Node) -> bool:
    return webtemplate.non_mandatory_rm_attribute(node, parent)


def _format(segs: list[tuple[str, int | None]] | tuple) -> str:
    return "/".join(f"{n}:{c}" if c is not None else n for n, c in segs)


# ------------------------------------------------------------------ public
def to_canonical(flat: dict[str, Any], opt: str | bytes | Path | WebTemplate | None = None, *,
                 template_id: str | None = None, now: str | None = None) -> dict:
    """Canonical COMPOSITION JSON for a FLAT composition of the template ``opt`` (OPT XML, a path to one,
    or a built WebTemplate) or of the registered template ``template_id``."""
    if not isinstance(flat, dict) or not flat:
        raise FlatError("a FLAT composition is a non-empty JSON object")
    if opt is None:
        wt0 = _REGISTERED.get(template_id) if template_id is not None else template_for(flat)
        if wt0 is None:
            raise FlatError("FLAT needs its operational template: none given or registered for it",
                            template_id=template_id)
        opt = wt0
    wt = web_template(opt)
    root = wt.tree.flat_id
    bad = [k for k in flat if not isinstance(k, str) or not (k.startswith("ctx/") or k == "ctx" or
                                                           k.split("/", 1)[0].split("|")[0] == root)]
    if bad:
        raise FlatError(f"keys outside web template '{root}'", keys=[str(k) for k in bad], template_id=wt.template_id)
    stamp = now or datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    walker = _Walker(wt, flat, _Defaults(flat, stamp))
    comp = walker.run()
    unconsumed = [k for k in flat if k not in walker.consumed and not k.startswith("ctx")]
    if unconsumed:
        raise FlatError("could not consume FLAT keys", keys=unconsumed, template_id=wt.template_id)
    return _canonical_order(comp)


def _canonical_order(obj: Any, attr: str | None = None) -> Any:
    if isinstance(obj, list):
        return [_canonical_order(x, attr) for x in obj]
    if not isinstance(obj, dict):
        return obj
    out = {}
    t = obj.get("_type")
    if "_type" in obj and not (t in _OMIT_TYPE and attr in ("data", "state")):
        out["_type"] = t
    for k, v in obj.items():
        if k == "_type" or k == "archetype_node_id":
            continue
        if isinstance(v, list) and not v:
            continue
        out[k] = _canonical_order(v, k)
    if "archetype_node_id" in obj and obj["archetype_node_id"] is not None:
        out["archetype_node_id"] = obj["archetype_node_id"]
    return out
