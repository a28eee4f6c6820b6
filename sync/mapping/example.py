"""Example compositions: one canonical COMPOSITION holding every node an operational template defines.

    from sync.mapping.example import example_composition, variants
    comp = example_composition(opt_xml)                  # deterministic: same OPT, same composition
    comp = example_composition(wt, values=my_chooser)    # a WebTemplate (webtemplate.build) works too
    comps = [example_composition(opt_xml, values=v) for v in variants(opt_xml)]  # every choice alternative

What it holds: every node of the template's web template (``webtemplate.build``: every archetype node
of the OPT, slot fillers included), each ELEMENT with a value of its RM type inside the template's
constraints:

* DV_TEXT (the template's first listed text, else ``"{node name} {n}"``, distinct per node),
  DV_CODED_TEXT (the first listed code with its rubric; an open or external one ``EX-n`` in the
  node's terminology, else ``local``), DV_QUANTITY (the first allowed unit, a magnitude inside that
  unit's range and precision; no unit list: ``1``), DV_COUNT (inside its range), DV_ORDINAL (first
  listed), DV_PROPORTION (the first allowed type, PERCENT when allowed, a numerator inside its range),
  DV_BOOLEAN (an allowed value), DV_DATE_TIME / DV_DATE / DV_TIME (distinct), DV_DURATION (the OPT's
  C_DURATION range when the OPT XML is given: the web template keeps only the allowed fields; else
  one unit of the first allowed field), DV_IDENTIFIER, DV_URI, DV_EHR_URI, DV_MULTIMEDIA, DV_PARSABLE,
  DV_STATE, DV_INTERVAL (lower = upper, both of its type);
* an ELEMENT offering several value types: one occurrence per type when it may repeat, else the first
  type (``variants`` gives one chooser per alternative index: their examples together hold every type);
* every EVENT node: an EVENT that may repeat gets a POINT_EVENT and an INTERVAL_EVENT, one that may not
  an INTERVAL_EVENT; POINT_EVENT / INTERVAL_EVENT nodes their own kind; an INTERVAL_EVENT its width and
  math function inside the template's constraints (math function: the listed code, else 146 mean);
  distinct times, the HISTORY origin the earliest;
* every CLUSTER, SECTION, entry, ACTIVITY (timing ``R/2024-03-01T08:00:00Z/PT8H``), INSTRUCTION
  narrative and expiry time, ACTION time and ISM transition (the first careflow step and its current
  state), context (start and end time, setting 238 other care, other_context);
* every repeatable node once, but the events and choice ELEMENTs above.  Containers left empty (a
  CLUSTER whose template gives no items) are left out: the RM needs an item.

Fixed: uid ``{uuid5(template id)}::example::1``, language the template's, territory DE, composer
PARTY_IDENTIFIED "Example composer", subjects PARTY_SELF, encoding UTF-8, names the template's.
Not generated: optional RM attributes the template does not constrain (uid, links, feeder_audit,
provider, other_participations, work_flow_id, guideline_id, HISTORY duration/period,
sample_count, ISM transition/reason, instruction_details, health_care_facility, participations,
location, null_reason) and unfilled slots.

``values(ask) -> value`` chooses every value (a hypothesis strategy can drive it).  It is asked once
per choice with an :class:`Ask`: ``path`` (the node path being built, openEHR node ids with ``:k`` for
the k-th same-id sibling, as ``rmpath`` writes them), ``rm_type``, ``kind`` (what is asked), the
deterministic ``default``, and the template's constraint: ``options`` (when not empty the answer must
be one of them) or ``low``/``high`` (inclusive) and ``digits`` (decimal places) for numbers.  Return
``ask.default`` to keep the default; ``values=None`` keeps every default.  Kinds and answers:
``occurrences`` int >= 1, ``event`` POINT_EVENT | INTERVAL_EVENT, ``alternative`` one of the RM types,
``null_flavour`` None or 271/253/272/273 (an ELEMENT with a null flavour has no value), ``text`` str,
``code`` (coded text or ordinal) str, ``unit`` str, ``magnitude`` float, ``count`` int,
``proportion_type`` int 0-4, ``numerator`` float (whole for types 3/4), ``boolean``, ``datetime`` /
``date`` / ``time`` / ``duration`` ISO 8601 str, ``identifier`` str, ``uri`` str, ``parsable`` str,
``math_function`` str (openEHR code).  Pure: no Django, no network.
"""
from __future__ import annotations

import functools
import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from . import flat, webtemplate
from .webtemplate import Node, WebTemplate

__all__ = ["Ask", "example_composition", "variants"]

_NS = "{http://schemas.openehr.org/v1}"
_T0 = datetime(2024, 3, 1, 8, 0, tzinfo=timezone(timedelta(hours=1)))
_PROPORTION = {"RATIO": 0, "UNITARY": 1, "PERCENT": 2, "FRACTION": 3, "INTEGER_FRACTION": 4}
_MATH_FUNCTIONS = ("146", "144", "145", "147", "148", "149", "267", "268", "521", "522", "640")
_NULL_FLAVOURS = ("271", "253", "272", "273")
_DURATION_FIELDS = {"year": "Y", "month": "M", "week": "W", "day": "D", "hour": "H", "minute": "M", "second": "S"}
_ENTRIES = {"OBSERVATION", "EVALUATION", "INSTRUCTION", "ACTION", "ADMIN_ENTRY"}
# optional RM attributes (no node id) that are generated anyway: they carry clinical content
_OPTIONAL_RM = {("INSTRUCTION", "expiry_time"), ("ACTIVITY", "timing"), ("EVENT_CONTEXT", "end_time")}
_NOT_GENERATED = {"name", "archetype_node_id", "uid", "archetype_details", "feeder_audit", "links", "null_flavour",
                  "null_reason", "subject", "provider", "other_participations", "work_flow_id", "workflow_id",
                  "guideline_id", "language", "encoding", "territory", "composer", "category",
                  "instruction_details", "wf_definition", "sample_count", "time", "width", "math_function",
                  "origin", "duration", "period", "ism_transition", "health_care_facility", "participations",
                  "location", "action_archetype_id"}


@dataclass(frozen=True)
class Ask:
    """One choice the generator makes; see the module doc for ``kind`` and the constraint fields."""
    path: str
    rm_type: str
    kind: str
    default: Any
    options: tuple = ()
    low: float | None = None
    high: float | None = None
    digits: int | None = None


Values = Callable[[Ask], Any]


def example_composition(webtemplate_or_opt_xml: WebTemplate | str | bytes | Path, *,
                        values: Values | None = None) -> dict:
    """Canonical COMPOSITION holding every node of the template (module doc); deterministic with
    ``values=None``.  Accepts a WebTemplate, OPT XML (text or bytes) or the path of an .opt file."""
    wt, ranges = _load(webtemplate_or_opt_xml)
    return _Gen(wt, ranges, values).composition()


def variants(webtemplate_or_opt_xml: WebTemplate | str | bytes | Path) -> list[Values]:
    """Choosers whose examples together hold every value type of every choice ELEMENT: the k-th picks
    the k-th type of each single (non-repeating) choice, wrapping round (a repeating one, which holds
    every type already, rotated), and keeps every other default."""
    wt, _ = _load(webtemplate_or_opt_xml)
    widest = max((len(_value_nodes(n)) for n in wt.tree.walk() if n.rm_type == "ELEMENT"), default=1)
    return [_kth(k) for k in range(max(widest, 1))]


def _kth(k: int) -> Values:
    def choose(ask: Ask) -> Any:
        if ask.kind == "alternative" and ask.options:  # rotated: a repeating choice keeps one of each
            return ask.options[(ask.options.index(ask.default) + k) % len(ask.options)]
        return ask.default
    return choose


# ------------------------------------------------------------------ the OPT
def _load(src) -> tuple[WebTemplate, dict[str, tuple[str | None, str | None]]]:
    if isinstance(src, WebTemplate):
        return src, {}
    if isinstance(src, Path) or (isinstance(src, str) and not src.lstrip("\ufeff \n\r\t").startswith("<")):
        src = Path(src).read_text(encoding="utf-8-sig")
    text = (src.decode("utf-8-sig") if isinstance(src, bytes) else src).lstrip("\ufeff")
    return flat.web_template(text), _duration_ranges(text)


def _plain(aql: str) -> str:
    """An AQL path without name predicates: '/a[at1 and name/value='x']' -> '/a[at1]'."""
    return re.sub(r"\[([^\]\s]+) and name/value='(?:[^'\\]|\\.)*'\]", r"[\1]", aql)


@functools.lru_cache(maxsize=32)  # one parse per OPT: examples are generated many times (property tests)
def _duration_ranges(opt_xml: str) -> dict[str, tuple[str | None, str | None]]:
    """Node-id path of each DV_DURATION -> its C_DURATION range (lower, upper) in the OPT (the web
    template keeps only the allowed fields: a 24-hour average's width of exactly PT24H is lost there)."""
    out: dict[str, tuple[str | None, str | None]] = {}
    definition = ET.fromstring(opt_xml.encode("utf-8")).find(f"{_NS}definition")

    def walk(el, path: str) -> None:
        if el.findtext(f"{_NS}rm_type_name") == "DV_DURATION":
            rng = el.find(f"{_NS}attributes/{_NS}children/{_NS}item/{_NS}range")
            if rng is not None:
                lo = None if rng.findtext(f"{_NS}lower_unbounded") == "true" else rng.findtext(f"{_NS}lower")
                hi = None if rng.findtext(f"{_NS}upper_unbounded") == "true" else rng.findtext(f"{_NS}upper")
                out.setdefault(path, (lo, hi))
        for attr in el.findall(f"{_NS}attributes"):
            name = attr.findtext(f"{_NS}rm_attribute_name")
            for child in attr.findall(f"{_NS}children"):
                nid = child.findtext(f"{_NS}archetype_id/{_NS}value") or (child.findtext(f"{_NS}node_id") or "").strip()
                walk(child, f"{path}/{name}" + (f"[{nid}]" if nid else ""))

    if definition is not None:
        walk(definition, "")
    return out


def _attr(node: Node) -> str:
    """The RM attribute a node sits in: the last step of its AQL path, predicate dropped."""
    last = re.split(r"/(?![^\[]*\])", node.aql_path)[-1]
    return last.split("[", 1)[0]


def _value_nodes(element: Node) -> list[Node]:
    """The value types an ELEMENT offers (one, or a choice)."""
    return [c for c in element.children if c.rm_type.startswith("DV_") and _attr(c) == "value"]


def _coded(value: str, terminology: str, code: str) -> dict:
    return {"_type": "DV_CODED_TEXT", "value": value,
            "defining_code": {"_type": "CODE_PHRASE", "terminology_id": {"_type": "TERMINOLOGY_ID", "value": terminology},
                              "code_string": code}}


def _phrase(terminology: str, code: str) -> dict:
    return {"_type": "CODE_PHRASE", "terminology_id": {"_type": "TERMINOLOGY_ID", "value": terminology},
            "code_string": code}


# ------------------------------------------------------------------ the generator
class _Gen:
    def __init__(self, wt: WebTemplate, ranges: dict, values: Values | None):
        self.wt, self.ranges, self.values = wt, ranges, values
        self.n = 0  # makes texts, times and identifiers distinct per node

    def ask(self, path: str, rm_type: str, kind: str, default: Any, **kw) -> Any:
        return default if self.values is None else self.values(Ask(path, rm_type, kind, default, **kw))

    def next(self) -> int:
        self.n += 1
        return self.n

    def time(self) -> str:
        return (_T0 + timedelta(hours=self.next())).isoformat()

    # -- structure
    def composition(self) -> dict:
        root = self.wt.tree
        lang = self.wt.default_language
        comp = {"_type": "COMPOSITION", "name": self.name(root), "archetype_node_id": root.node_id,
                "archetype_details": {"_type": "ARCHETYPED",
                                      "archetype_id": {"_type": "ARCHETYPE_ID", "value": root.node_id},
                                      "template_id": {"_type": "TEMPLATE_ID", "value": self.wt.template_id},
                                      "rm_version": "1.0.4"},
                "uid": {"_type": "OBJECT_VERSION_ID", "value": f"{uuid.uuid5(uuid.NAMESPACE_URL, 'example:' + self.wt.template_id)}::example::1"},
                "language": _phrase("ISO_639-1", lang), "territory": _phrase("ISO_3166-1", "DE")}
        cat = root.child("category")
        listed = [v for i in (cat.inputs if cat else []) for v in i.list]
        comp["category"] = _coded(listed[0]["label"], "openehr", listed[0]["value"]) if listed else \
            _coded("event", "openehr", "433")
        comp["composer"] = {"_type": "PARTY_IDENTIFIED", "name": "Example composer"}
        ctx = root.child("context")
        if ctx is not None:
            comp["context"] = self.context(ctx)
        self.fill(root, comp, "")
        return comp

    def context(self, node: Node) -> dict:
        obj: dict = {"_type": "EVENT_CONTEXT", "start_time": {"_type": "DV_DATE_TIME", "value": _T0.isoformat()},
                     "setting": _coded("other care", "openehr", "238")}
        end = node.child("end_time")
        if end is not None:
            obj["end_time"] = {"_type": "DV_DATE_TIME",
                               "value": self.ask("/context/end_time", "DV_DATE_TIME", "datetime",
                                                 (_T0 + timedelta(days=1)).isoformat())}
        self.fill(node, obj, "/context")
        return obj

    def fill(self, node: Node, obj: dict, path: str) -> None:
        """Generate ``node``'s children into ``obj``."""
        multiple = webtemplate.rm_attributes(obj["_type"] if obj["_type"] in webtemplate.RM_ATTRIBUTES
                                             else node.rm_type)
        for c in node.children:
            attr = _attr(c)
            if c.archetype_slot or attr in _NOT_GENERATED or c.rm_type == "ISM_TRANSITION":
                continue
            if c.rm_type in webtemplate.LOCATABLE_TYPES and c.node_id:
                is_list = multiple.get(attr, (None, attr in ("items", "events", "content", "activities", "rows")))[1]
                for child, _ in self.occurrences(c, obj, attr, path):
                    if is_list:
                        obj.setdefault(attr, []).append(child)
                    else:
                        obj[attr] = child
            elif c.rm_type.startswith("DV_") and (c.min > 0 or (obj["_type"], attr) in _OPTIONAL_RM):
                if attr in obj:
                    continue  # set by the caller (context start time and setting)
                obj[attr] = self.dv(c, f"{path}/{attr}")

    def occurrences(self, c: Node, parent: dict, attr: str, path: str):
        """(object, node path) for each occurrence of the LOCATABLE node ``c`` (None ones left out)."""
        multi = c.max != 1
        if c.rm_type in webtemplate.EVENT_TYPES:
            kinds = ["POINT_EVENT", "INTERVAL_EVENT"] if c.rm_type == "EVENT" and multi else \
                ["INTERVAL_EVENT"] if c.rm_type == "EVENT" else [c.rm_type]
        elif c.rm_type == "ELEMENT" and len(_value_nodes(c)) > 1 and multi:
            kinds = [v.rm_type for v in _value_nodes(c)]
        else:
            kinds = [None]
        here = f"{path}/{attr}[{c.node_id}]"
        count = self.ask(here, c.rm_type, "occurrences", len(kinds), low=1,
                         high=None if c.max == -1 else c.max) if multi else 1
        out = []
        for i in range(count):
            k = sum(1 for x in parent.get(attr) or [] if isinstance(x, dict) and x.get("archetype_node_id") == c.node_id) \
                if isinstance(parent.get(attr), list) else 0
            k += sum(1 for x, _ in out if x.get("archetype_node_id") == c.node_id)
            p = here + (f":{k}" if k else "")
            obj = self.locatable(c, p, kinds[i % len(kinds)])
            if obj is not None:
                out.append((obj, p))
        return out

    def name(self, node: Node) -> dict:
        nm = node.child("name")
        if nm is not None and nm.rm_type == "DV_CODED_TEXT":
            listed = [v for i in nm.inputs if i.suffix == "code" for v in i.list]
            if listed:
                term = next((i.terminology for i in nm.inputs if i.terminology), None) or "local"
                return _coded(listed[0].get("label") or node.name, term, listed[0]["value"])
        return {"_type": "DV_TEXT", "value": node.name}

    def locatable(self, node: Node, path: str, kind: str | None) -> dict | None:
        t = node.rm_type
        if t in webtemplate.EVENT_TYPES:
            t = self.ask(path, t, "event", kind, options=("POINT_EVENT", "INTERVAL_EVENT")) if t == "EVENT" else t
        obj: dict = {"_type": t, "name": self.name(node), "archetype_node_id": node.node_id}
        if node.node_id.startswith("openEHR-"):
            obj["archetype_details"] = {"_type": "ARCHETYPED", "archetype_id": {"_type": "ARCHETYPE_ID",
                                        "value": node.node_id}, "rm_version": "1.0.4"}
        if t == "ELEMENT":
            return self.element(node, obj, path, kind)
        if t in _ENTRIES:
            obj["language"] = _phrase("ISO_639-1", self.wt.default_language)
            obj["encoding"] = _phrase("IANA_character-sets", "UTF-8")
            obj["subject"] = {"_type": "PARTY_SELF"}
        if t == "ACTION":
            obj["time"] = {"_type": "DV_DATE_TIME", "value": self.ask(f"{path}/time", "DV_DATE_TIME", "datetime",
                                                                      self.time())}
            ism = next((c for c in node.children if c.rm_type == "ISM_TRANSITION"), None)
            obj["ism_transition"] = self.ism(ism, f"{path}/ism_transition")
        if t in webtemplate.EVENT_TYPES:
            self.event(node, obj, path)
        if t == "ACTIVITY":
            obj["action_archetype_id"] = "/.*/"
        self.fill(node, obj, path)
        if t == "HISTORY":
            times = sorted((e["time"]["value"] for e in obj.get("events") or []), key=_instant)
            obj["origin"] = {"_type": "DV_DATE_TIME", "value": times[0] if times else self.time()}
        if t in ("CLUSTER", "ITEM_TREE", "ITEM_LIST", "SECTION") and not obj.get("items"):
            return None  # nothing the template gives to put in it
        if t == "HISTORY" and not obj.get("events"):
            return None
        if t in ("ITEM_SINGLE",) and not obj.get("item"):
            return None
        return obj

    def event(self, node: Node, obj: dict, path: str) -> None:
        obj["time"] = {"_type": "DV_DATE_TIME", "value": self.ask(f"{path}/time", "DV_DATE_TIME", "datetime",
                                                                  self.time())}
        if obj["_type"] != "INTERVAL_EVENT":
            return
        mf = node.child("math_function")
        listed = [v for i in (mf.inputs if mf else []) if i.suffix == "code" for v in i.list]
        codes = tuple(v["value"] for v in listed) or _MATH_FUNCTIONS
        code = self.ask(f"{path}/math_function", "DV_CODED_TEXT", "math_function", codes[0], options=codes)
        obj["math_function"] = _coded(webtemplate.OPENEHR_TERMS.get(code, code), "openehr", code)
        width = node.child("width")
        obj["width"] = {"_type": "DV_DURATION",
                        "value": self.duration(width, f"{path}/width", node.aql_path + "/width")}

    def ism(self, node: Node | None, path: str) -> dict:
        step = node.child("careflow_step") if node else None
        state = node.child("current_state") if node else None
        steps = [v for i in (step.inputs if step else []) for v in i.list]
        states = [v for i in (state.inputs if state else []) for v in i.list]
        out: dict = {"_type": "ISM_TRANSITION"}
        code = None
        if steps:
            code = self.ask(f"{path}/careflow_step", "DV_CODED_TEXT", "code", steps[0]["value"],
                            options=tuple(v["value"] for v in steps))
            hit = next(v for v in steps if v["value"] == code)
            out["careflow_step"] = _coded(hit.get("label") or code, "local", code)
            cs = (hit.get("currentStates") or [None])[0]
            if cs:
                out["current_state"] = _coded(webtemplate.OPENEHR_TERMS.get(cs, cs), "openehr", cs)
                return out
        cs = self.ask(f"{path}/current_state", "DV_CODED_TEXT", "code", states[0]["value"] if states else "532",
                      options=tuple(v["value"] for v in states))
        out["current_state"] = _coded(webtemplate.OPENEHR_TERMS.get(cs, cs), "openehr", cs)
        return out

    def element(self, node: Node, obj: dict, path: str, kind: str | None) -> dict | None:
        alts = _value_nodes(node)
        if not alts:
            return None
        names = tuple(a.rm_type for a in alts)
        pick = self.ask(path, "ELEMENT", "alternative", kind or names[0], options=names) if len(alts) > 1 else names[0]
        nf = self.ask(path, "ELEMENT", "null_flavour", None, options=(None,) + _NULL_FLAVOURS)
        if nf is not None:
            obj["null_flavour"] = _coded(webtemplate.OPENEHR_TERMS[nf], "openehr", nf)
        else:
            obj["value"] = self.dv(alts[names.index(pick)], f"{path}/value")
        return obj

    # -- values
    def dv(self, node: Node, path: str) -> dict:
        t, ask = node.rm_type, self.ask
        ins = {i.suffix: i for i in node.inputs}
        n = self.next()
        if t.startswith("DV_INTERVAL"):
            kids = {_attr(c): c for c in node.children}
            bound = kids.get("lower") or kids.get("upper")
            out = {"_type": "DV_INTERVAL", "lower_included": True, "upper_included": True,
                   "lower_unbounded": False, "upper_unbounded": False}
            if bound is not None:
                out["lower"] = self.dv(bound, f"{path}/lower")
                out["upper"] = dict(out["lower"])  # lower = upper: inside any range the template gives
            return out
        if t == "DV_TEXT":
            listed = tuple(v["value"] for i in node.inputs for v in i.list)
            return {"_type": t, "value": ask(path, t, "text", listed[0] if listed else f"{node.name} {n}",
                                             options=listed)}
        if t in ("DV_CODED_TEXT", "DV_STATE"):
            code_in = ins.get("code")
            listed = [v for v in (code_in.list if code_in else [])]
            term = next((i.terminology for i in node.inputs if i.terminology), None) or "local"
            if listed:
                code = ask(path, t, "code", listed[0]["value"], options=tuple(v["value"] for v in listed))
                hit = next(v for v in listed if v["value"] == code)
                coded = _coded(hit.get("label") or code, term, code)
            else:
                coded = _coded(ask(path, t, "text", f"{node.name} {n}"), term, ask(path, t, "code", f"EX-{n}"))
            return coded if t == "DV_CODED_TEXT" else {"_type": t, "value": coded, "is_terminal": False}
        if t == "DV_QUANTITY":
            unit_in = ins.get("unit")
            listed = unit_in.list if unit_in else []
            unit = ask(path, t, "unit", listed[0]["value"] if listed else "1", options=tuple(v["value"] for v in listed))
            item = next((v for v in listed if v["value"] == unit), {})
            lo, hi, digits = _bounds(item.get("validation") or (ins["magnitude"].validation if "magnitude" in ins
                                                                else None))
            mag = ask(path, t, "magnitude", _pick(lo, hi, digits, 1.0), low=lo, high=hi, digits=digits)
            return {"_type": t, "magnitude": float(mag), "units": unit}
        if t == "DV_COUNT":
            lo, hi, _ = _bounds(next(iter(ins.values())).validation if ins else None)
            return {"_type": t, "magnitude": int(ask(path, t, "count", int(_pick(lo, hi, 0, 1.0)), low=lo, high=hi,
                                                     digits=0))}
        if t == "DV_ORDINAL":
            listed = [v for i in node.inputs for v in i.list]
            code = ask(path, t, "code", listed[0]["value"], options=tuple(v["value"] for v in listed)) if listed \
                else f"EX-{n}"
            hit = next((v for v in listed if v["value"] == code), {"ordinal": 1, "label": code})
            return {"_type": t, "value": int(hit.get("ordinal", 1)),
                    "symbol": _coded(hit.get("label") or code, "local", code)}
        if t == "DV_PROPORTION":
            allowed = tuple(_PROPORTION[x] for x in node.proportion_types if x in _PROPORTION) or tuple(range(5))
            kind = ask(path, t, "proportion_type", 2 if 2 in allowed else allowed[0], options=allowed)
            num_in = ins.get("numerator")
            lo, hi, digits = _bounds(num_in.validation if num_in else None)
            whole = kind in (3, 4)
            num = ask(path, t, "numerator", _pick(lo, hi, 0 if whole else digits, {2: 50.0, 1: 0.5}.get(kind, 1.0)),
                      low=lo, high=hi, digits=0 if whole else digits)
            out = {"_type": t, "numerator": float(num), "denominator": {2: 100.0, 1: 1.0}.get(kind, 2.0), "type": kind}
            if whole:
                out["precision"] = 0
            return out
        if t == "DV_BOOLEAN":
            listed = tuple(v["value"] == "true" for i in node.inputs for v in i.list)
            return {"_type": t, "value": bool(ask(path, t, "boolean", listed[0] if listed else True, options=listed))}
        if t == "DV_DATE_TIME":
            return {"_type": t, "value": ask(path, t, "datetime", self.time())}
        if t == "DV_DATE":
            return {"_type": t, "value": ask(path, t, "date", (_T0 + timedelta(days=n)).date().isoformat())}
        if t == "DV_TIME":
            return {"_type": t, "value": ask(path, t, "time", (_T0 + timedelta(minutes=n)).time().isoformat())}
        if t == "DV_DURATION":
            return {"_type": t, "value": self.duration(node, path, node.aql_path)}
        if t == "DV_IDENTIFIER":
            return {"_type": t, "issuer": "Example issuer", "assigner": "Example assigner",
                    "id": ask(path, t, "identifier", f"ID-{n}"), "type": "Example type"}
        if t == "DV_URI":
            return {"_type": t, "value": ask(path, t, "uri", f"https://example.org/{n}")}
        if t == "DV_EHR_URI":
            return {"_type": t, "value": ask(path, t, "uri", f"ehr://example/{n}")}
        if t == "DV_MULTIMEDIA":
            return {"_type": t, "uri": {"_type": "DV_URI", "value": ask(path, t, "uri", f"https://example.org/media/{n}")},
                    "media_type": _phrase("IANA_media-types", "text/plain"), "alternate_text": f"{node.name} {n}",
                    "size": 1}
        if t == "DV_PARSABLE":
            timing = _attr(node) == "timing"
            return {"_type": t, "value": ask(path, t, "parsable", "R/2024-03-01T08:00:00Z/PT8H" if timing
                                             else f"{node.name} {n}"),
                    "formalism": "timing" if timing else "text/plain"}
        raise ValueError(f"no example value for RM type {t} at {path}")

    def duration(self, node: Node | None, path: str, aql: str) -> str:
        lo, hi = self.ranges.get(_plain(aql), (None, None))
        fields = tuple(i.suffix for i in (node.inputs if node else []) if i.suffix in _DURATION_FIELDS) or ("hour",)
        if lo is not None and (lo == hi or re.search(r"[1-9]", lo)):
            default = lo
        elif hi is not None and re.search(r"[1-9]", hi):
            default = hi
        else:
            f = next((x for x in ("hour", "day", "minute", "second", "week", "month", "year") if x in fields), fields[0])
            default = ("PT1" if f in ("hour", "minute", "second") else "P1") + _DURATION_FIELDS[f]
        return self.ask(path, "DV_DURATION", "duration", default,
                        options=(lo,) if lo is not None and lo == hi else ())


def _instant(value: str) -> tuple:
    """Sort key of an ISO date/time: the instant (no zone read as UTC), unparsable ones last."""
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return (1, 0.0, value)
    return (0, (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp(), value)


def _bounds(validation: dict | None) -> tuple[float | None, float | None, int | None]:
    """(low, high, decimal digits) from a web-template validation; exclusive bounds nudged inwards."""
    rng = (validation or {}).get("range") or {}
    prec = (validation or {}).get("precision") or {}
    digits = int(prec["max"]) if isinstance(prec.get("max"), (int, float)) and prec["max"] >= 0 else None
    step = 10 ** -(digits if digits is not None else 2)
    lo, hi = rng.get("min"), rng.get("max")
    if lo is not None and rng.get("minOp") == ">":
        lo += step
    if hi is not None and rng.get("maxOp") == "<":
        hi -= step
    return lo, hi, digits


def _pick(lo: float | None, hi: float | None, digits: int | None, default: float) -> float:
    """A value inside [lo, hi], a quarter of the way up when both are known, else ``default`` above lo."""
    if lo is not None and hi is not None:
        v = lo + (hi - lo) / 4
    elif lo is not None:
        v = lo + default
    elif hi is not None:
        v = min(default, hi)
    else:
        v = default
    v = round(v, digits if digits is not None else 2)
    v = max(v, lo) if lo is not None else v
    v = min(v, hi) if hi is not None else v
    return float(v)
