"""ADL 1.4 reader for the template builder (build_oncology_opt.py): CKM archetypes -> an AOM 1.4 tree.

Why we read ADL 1.4 ourselves (PyPI checked again, 2026-10):
* pyehr-openehr 0.1.17 has an ANTLR ADL 1.4 grammar and AOM 1.4 classes, but it is "Pre-Alpha",
  GPL-3.0-or-later, needs Python >= 3.12.1 (our venv is 3.11), pulls flask, pymongo, numpy, twine
  and pins pytest~=9.1 (we run 9.2) as run-time dependencies, and neither flattens specialised
  archetypes nor builds operational templates;
* oehrpy 0.17 reads and validates OPT 1.4 but has no ADL reader; pyopenehr-am 0.0.3 is ADL 2 /
  AOM 2 / OPT 2 only (Python >= 3.12); flatehr 1.2 builds compositions from other formats.
No maintained library turns ADL 1.4 into OPT 1.4, so this module reads the subset of ADL 1.4 that
CKM publishes, with the standard library only, and raises AdlError on anything else (nothing is
guessed).

What it reads (ADL 1.4 spec sections cADL and dADL/ODIN; the openEHR archetype profile):
* C_COMPLEX_OBJECT with node id, occurrences, ``matches {*}``; single and multiple C_ATTRIBUTE
  with existence, cardinality (ordered/unordered, unique);
* ARCHETYPE_SLOT (``allow_archetype``) with ``archetype_id/value`` include/exclude regexes;
* ARCHETYPE_INTERNAL_REF (``use_node TYPE /path``);
* C_CODE_PHRASE ``[terminology::code, ...; assumed]``;
* C_DV_QUANTITY (ODIN block: property, list of units with magnitude/precision intervals,
  assumed_value);
* C_DV_ORDINAL ``0|[local::at0021], 1|[local::at0015]; 0`` and, with real values, DV_SCALE;
* C_PRIMITIVE_OBJECT for BOOLEAN, INTEGER, REAL, STRING (list or /regex/), DURATION (pattern
  and/or range), DATE, DATE_TIME, TIME, each with an optional assumed value, where the RM says
  which primitive type the attribute has (PRIMITIVE_TYPES);
* the ontology (term_definitions in "en", at-code term_bindings);
* specialisation: ``specialise PARENT`` is read from the same folder and the child is flattened
  onto it (see flatten()).
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path


class AdlError(ValueError):
    """ADL text outside the subset this reader supports, or an invalid archetype."""


# --------------------------------------------------------------------------------------
# The archetype object model (the part of AOM 1.4 the template builder needs)
# --------------------------------------------------------------------------------------
@dataclass
class CAttribute:
    name: str
    multiple: bool
    existence: tuple[int, int | None] | None = None
    cardinality: tuple[int, int | None, bool] | None = None  # lower, upper, ordered
    children: list = field(default_factory=list)
    unique: bool = False


@dataclass
class CObject:
    # complex | slot | internal_ref | code_phrase | dv_quantity | ordinal | scale | primitive
    kind: str
    rm_type: str
    node_id: str = ""
    occurrences: tuple[int, int | None] = (1, 1)
    attributes: list[CAttribute] = field(default_factory=list)
    any_allowed: bool = False
    # slot
    includes: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)
    # code phrase
    terminology: str = ""
    codes: list[str] = field(default_factory=list)
    # dv_quantity
    property: tuple[str, str] | None = None
    units: list[dict] = field(default_factory=list)
    # ordinal / scale: (value, terminology, code) in archetype order
    ordinals: list[tuple[str, str, str]] = field(default_factory=list)
    # primitive: source text of the constraint (without the assumed value)
    raw: str = ""
    # code phrase: code; ordinal/scale: value; primitive: source text; dv_quantity: dict
    assumed: object = None
    # internal_ref
    target_path: str = ""


@dataclass
class Archetype:
    archetype_id: str
    concept: str
    definition: CObject
    terms: dict[str, dict[str, str]]  # at-code -> {text, description, comment, ...}
    bindings: dict[str, dict[str, str]]  # terminology -> {at-code: code}
    parent_id: str | None = None  # the archetype this one specialises (already flattened in)


# multiple-valued RM attributes (the rest are single)
MULTIPLE_ATTRS = {"items", "events", "activities", "content", "other_participations", "links"}
# primitive RM type of (owner RM type, attribute)
PRIMITIVE_TYPES = {
    ("DV_BOOLEAN", "value"): "BOOLEAN",
    ("DV_DURATION", "value"): "DURATION",
    ("DV_COUNT", "magnitude"): "INTEGER",
    ("DV_QUANTITY", "magnitude"): "REAL",
    ("DV_QUANTITY", "precision"): "INTEGER",
    ("DV_QUANTITY", "units"): "STRING",
    ("DV_PROPORTION", "numerator"): "REAL",
    ("DV_PROPORTION", "denominator"): "REAL",
    ("DV_PROPORTION", "type"): "INTEGER",
    ("DV_PROPORTION", "precision"): "INTEGER",
    ("DV_ORDINAL", "value"): "INTEGER",
    ("DV_SCALE", "value"): "REAL",
    ("DV_PARSABLE", "formalism"): "STRING",
    ("DV_PARSABLE", "value"): "STRING",
    ("DV_TEXT", "value"): "STRING",
    ("DV_CODED_TEXT", "value"): "STRING",
    ("DV_URI", "value"): "STRING",
    ("DV_EHR_URI", "value"): "STRING",
    ("DV_IDENTIFIER", "issuer"): "STRING",
    ("DV_IDENTIFIER", "assigner"): "STRING",
    ("DV_IDENTIFIER", "id"): "STRING",
    ("DV_IDENTIFIER", "type"): "STRING",
    ("DV_DATE_TIME", "value"): "DATE_TIME",
    ("DV_DATE", "value"): "DATE",
    ("DV_TIME", "value"): "TIME",
    ("ACTIVITY", "action_archetype_id"): "STRING",  # a regex over ACTION archetype ids
    ("CODE_PHRASE", "code_string"): "STRING",
    ("TERMINOLOGY_ID", "value"): "STRING",
}
# RM subtypes a specialised archetype may narrow a parent's type to (child -> parents)
RM_SUBTYPES = {
    "DV_CODED_TEXT": {"DV_TEXT"},
    "POINT_EVENT": {"EVENT"},
    "INTERVAL_EVENT": {"EVENT"},
    "ITEM_TREE": {"ITEM_STRUCTURE"},
    "ITEM_LIST": {"ITEM_STRUCTURE"},
    "ITEM_SINGLE": {"ITEM_STRUCTURE"},
    "ITEM_TABLE": {"ITEM_STRUCTURE"},
    "CLUSTER": {"ITEM"},
    "ELEMENT": {"ITEM"},
}


# --------------------------------------------------------------------------------------
# Lexical helpers
# --------------------------------------------------------------------------------------
def _strip_comments(text: str) -> str:
    """Drop '--' comments, but not a '--' inside a "string"."""
    out = []
    for line in text.split("\n"):
        in_str = False
        i = 0
        cut = len(line)
        while i < len(line):
            c = line[i]
            if in_str:
                if c == "\\":
                    i += 1
                elif c == '"':
                    in_str = False
            elif c == '"':
                in_str = True
            elif line.startswith("--", i):
                cut = i
                break
            i += 1
        out.append(line[:cut])
    return "\n".join(out)


def _scan_regex(s: str, i: int) -> int:
    """Index just past the '/' closing the regex whose opening '/' is at s[i]."""
    j = i + 1
    while j < len(s):
        if s[j] == "\\":
            j += 2
            continue
        if s[j] == "/":
            return j + 1
        j += 1
    raise AdlError(f"unterminated regex {s[i:i + 60]!r}")


def parse_interval(text: str):
    """ADL interval '|a..b|', '|>a..<b|', '|>=a|', '|<a|', '|a|' -> (lower, upper, lower_incl, upper_incl).

    Bounds stay source text (so numbers are written as the archetype wrote them); None = unbounded.
    """
    body = text.strip()
    if not (body.startswith("|") and body.endswith("|")) or len(body) < 2:
        raise AdlError(f"not an interval: {text!r}")
    body = body[1:-1].strip()
    if ".." in body:
        lo, hi = (x.strip() for x in body.split("..", 1))
        li = ui = True
        if lo.startswith(">"):
            lo, li = lo[1:].strip(), False
        if hi.startswith("<"):
            hi, ui = hi[1:].strip(), False
        return (None if lo == "*" else lo), (None if hi == "*" else hi), li, ui
    for op, lower, incl in ((">=", True, True), ("<=", False, True), (">", True, False), ("<", False, False)):
        if body.startswith(op):
            v = body[len(op):].strip()
            return (v, None, incl, True) if lower else (None, v, True, incl)
    return body, body, True, True


# --------------------------------------------------------------------------------------
# ODIN (dADL): the ontology section and the C_DV_QUANTITY blocks
# --------------------------------------------------------------------------------------
class OdinInterval(str):
    """An ODIN interval value, kept as its source text ('|>=0.0|')."""


_ODIN_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<key>\[\s*"(?:[^"\\]|\\.)*"\s*\])'
    r"|(?P<code>\[[A-Za-z0-9_.\-() ]+::[^\]]*\])|(?P<interval>\|[^|]*\|)"
    r"|(?P<uri>[a-z][a-z0-9+.\-]*://[^\s<>]*)|(?P<ellipsis>\.\.\.)"
    r"|(?P<date>\d{4}-\d\d-\d\d(?:T[0-9:.,+\-Z]*)?)|(?P<number>[+\-]?\d+(?:\.\d+)?(?:[eE][+\-]?\d+)?)"
    r"|(?P<sym>[<>=,;])|(?P<name>[A-Za-z_][A-Za-z0-9_]*))",
    re.S,
)


class _Odin:
    def __init__(self, text: str, pos: int = 0, where: str = "ODIN"):
        self.s = text
        self.pos = pos
        self.where = where
        self._tok = None
        self._advance()

    def _advance(self):
        m = _ODIN_TOKEN.match(self.s, self.pos)
        if not m:
            start = len(self.s) - len(self.s[self.pos:].lstrip())
            # not ODIN: an error only if the parser goes on to read it (a C_DV_QUANTITY block
            # is followed by cADL text)
            self._tok = ("eof" if start == len(self.s) else "bad", None, start, start)
            return
        self._tok = (m.lastgroup, m.group(m.lastgroup), m.start(m.lastgroup), m.end())
        self.pos = m.end()

    @property
    def tok(self):
        return self._tok

    def next(self):
        t = self._tok
        if t[0] == "bad":
            raise AdlError(f"{self.where}: cannot read {self.s[t[2]:t[2] + 60]!r}")
        if t[0] != "eof":
            self._advance()
        return t

    def expect(self, sym: str):
        k, v, *_ = self.next()
        if v != sym:
            raise AdlError(f"{self.where}: expected {sym!r}, found {v!r}")

    def value(self):
        """'<' ... '>': an object (name = value ...), a keyed table (["k"] = value ...) or primitives."""
        self.expect("<")
        k, v, *_ = self.tok
        if k == "sym" and v == ">":
            self.next()
            return None
        if k in ("name", "key") and not (k == "name" and v in ("True", "False", "true", "false")):
            d = {}
            while self.tok[1] != ">":
                k2, v2, *_ = self.next()
                if k2 not in ("name", "key"):
                    raise AdlError(f"{self.where}: expected a key, found {v2!r}")
                key = v2 if k2 == "name" else _unescape(v2.strip()[1:-1].strip()[1:-1])
                self.expect("=")
                d[key] = self.value()
            self.next()
            return d
        items = []
        while self.tok[1] != ">":
            k2, v2, *_ = self.next()
            if k2 == "eof":
                raise AdlError(f"{self.where}: unterminated value")
            if k2 == "str":
                items.append(_unescape(v2[1:-1]))
            elif k2 == "code":
                items.append(v2[1:-1])
            elif k2 == "interval":
                items.append(OdinInterval(v2))
            elif k2 in ("number", "date", "uri", "name"):
                items.append(v2)
            elif k2 == "sym" and v2 in ",;":
                continue
            elif k2 == "ellipsis":
                continue
            else:
                raise AdlError(f"{self.where}: unexpected {v2!r}")
        self.next()
        return items[0] if len(items) == 1 else items

    def document(self) -> dict:
        top = {}
        while self.tok[0] != "eof":
            k, name, *_ = self.next()
            if k != "name":
                raise AdlError(f"{self.where}: expected an attribute name, found {name!r}")
            self.expect("=")
            top[name] = self.value()
        return top


def _unescape(s: str) -> str:
    return s.replace('\\"', '"').replace("\\\\", "\\")


def odin(text: str, where: str = "ODIN") -> dict:
    return _Odin(text, 0, where).document()


# --------------------------------------------------------------------------------------
# cADL (the definition section)
# --------------------------------------------------------------------------------------
_TYPE_HEAD = re.compile(r"([A-Z][A-Z0-9_]*(?:<[A-Z0-9_<>, ]+>)?)\s*(?=\[|occurrences\b|matches\b)")
_ORDINAL_HEAD = re.compile(r"[+\-]?\d+(?:\.\d+)?\s*\|\s*\[")


class _Reader:
    def __init__(self, text: str, source: str):
        self.s = text
        self.i = 0
        self.source = source
        self._ordered = True
        self._unique = False

    def err(self, msg: str) -> AdlError:
        line = self.s.count("\n", 0, self.i) + 1
        return AdlError(f"{self.source}: definition line {line}: {msg}: {self.s[self.i:self.i + 60]!r}")

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def at(self, lit: str) -> bool:
        self.ws()
        return self.s.startswith(lit, self.i)

    def at_word(self, word: str) -> bool:
        self.ws()
        return re.compile(re.escape(word) + r"\b").match(self.s, self.i) is not None

    def eat(self, lit: str) -> None:
        if not self.at(lit):
            raise self.err(f"expected {lit!r}")
        self.i += len(lit)

    def word(self) -> str:
        self.ws()
        m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:<[A-Z0-9_<>, ]+>)?").match(self.s, self.i)
        if not m:
            raise self.err("expected a name")
        self.i = m.end()
        return m.group(0)

    def interval(self) -> tuple[int, int | None]:
        """'{lo..hi}' or '{n}', with '; ordered/unordered; unique' for cardinality."""
        self.eat("{")
        m = re.compile(r"\s*(\d+)\s*(?:\.\.\s*(\d+|\*))?\s*").match(self.s, self.i)
        if not m:
            raise self.err("expected an interval")
        self.i = m.end()
        lo = int(m.group(1))
        hi = m.group(2)
        upper = lo if hi is None else (None if hi == "*" else int(hi))
        ordered, unique = True, False
        if self.at(";"):
            end = self.s.index("}", self.i)
            words = {w.strip() for w in self.s[self.i:end].split(";") if w.strip()}
            if words - {"ordered", "unordered", "unique"}:
                raise self.err(f"unknown cardinality flags {sorted(words)}")
            ordered = "unordered" not in words
            unique = "unique" in words
            self.i = end
        self.eat("}")
        self._ordered, self._unique = ordered, unique
        return lo, upper

    def node_id(self) -> str:
        if self.at("["):
            self.eat("[")
            end = self.s.index("]", self.i)
            nid = self.s[self.i:end].strip()
            self.i = end + 1
            if not re.fullmatch(r"at\d+(\.\d+)*", nid):
                raise self.err(f"bad node id [{nid}]")
            return nid
        return ""

    def occurrences(self, default=(1, 1)) -> tuple[int, int | None]:
        if self.at_word("occurrences"):
            self.eat("occurrences")
            self.eat("matches")
            return self.interval()
        return default

    def regex(self) -> str:
        self.ws()
        if not self.at("/"):
            raise self.err("expected a /regex/")
        end = _scan_regex(self.s, self.i)
        body = self.s[self.i + 1:end - 1]
        self.i = end
        return body

    def code_phrase(self) -> CObject:
        self.eat("[")
        end = self.s.index("]", self.i)
        body = self.s[self.i:end]
        self.i = end + 1
        if "::" not in body:
            raise self.err(f"constraint reference [{body.strip()}] (ac-code) not supported")
        term, _, rest = body.partition("::")
        codes, _, assumed = rest.partition(";")
        return CObject("code_phrase", "CODE_PHRASE", terminology=term.strip(),
                       codes=[c.strip() for c in codes.split(",") if c.strip()],
                       assumed=assumed.strip() or None)


def _parse_object(r: _Reader, owner_rm: str, attr: str) -> CObject:
    r.ws()
    if r.at_word("allow_archetype"):
        return _parse_slot(r)
    if r.at_word("use_node"):
        r.eat("use_node")
        rm = r.word()
        node_id = r.node_id()
        occ = r.occurrences(default=None)  # unstated: the target's (SPEC-233)
        r.ws()
        m = re.compile(r"/[^\s{}]*").match(r.s, r.i)
        if not m:
            raise r.err("expected the target path of use_node")
        r.i = m.end()
        return CObject("internal_ref", rm, node_id, occ, target_path=m.group(0))
    if r.at_word("use_archetype"):
        raise r.err("use_archetype (ADL 2) not supported")
    if r.at("["):
        return r.code_phrase()
    if r.at_word("C_DV_QUANTITY"):
        r.eat("C_DV_QUANTITY")
        return _parse_dv_quantity(r)
    if r.at_word("C_DV_ORDINAL") or r.at_word("C_CODE_PHRASE"):
        raise r.err("ODIN-form domain type not supported")
    if _ORDINAL_HEAD.match(r.s, r.i):
        return _parse_ordinal(r)
    m = _TYPE_HEAD.match(r.s, r.i)
    if m:
        rm = r.word()
        node_id = r.node_id()
        occ = r.occurrences()
        r.eat("matches")
        r.eat("{")
        obj = CObject("complex", rm, node_id, occ)
        if r.at("*"):
            r.eat("*")
            obj.any_allowed = True
        else:
            while not r.at("}"):
                obj.attributes.append(_parse_attribute(r, rm))
        r.eat("}")
        return obj
    return _parse_primitive(r, owner_rm, attr)


def _parse_slot(r: _Reader) -> CObject:
    r.eat("allow_archetype")
    rm = r.word()
    node_id = r.node_id()
    occ = r.occurrences()
    r.eat("matches")
    r.eat("{")
    slot = CObject("slot", rm, node_id, occ)
    if r.at("*"):
        r.eat("*")
    mode = None
    while not r.at("}"):
        w = r.word()
        if w in ("include", "exclude"):
            mode = w
            continue
        if w != "archetype_id" or mode is None:
            raise r.err("unsupported slot assertion")
        r.eat("/value")
        r.eat("matches")
        r.eat("{")
        pattern = r.regex()
        r.eat("}")
        (slot.includes if mode == "include" else slot.excludes).append(pattern)
    r.eat("}")
    return slot


def _parse_dv_quantity(r: _Reader) -> CObject:
    o = _Odin(r.s, r.i, f"{r.source}: C_DV_QUANTITY")
    block = o.value() or {}
    r.i = o.tok[2]  # start of the first token after the block
    q = CObject("dv_quantity", "DV_QUANTITY")
    unknown = set(block) - {"property", "list", "assumed_value"}
    if unknown:
        raise r.err(f"C_DV_QUANTITY keys {sorted(unknown)} not supported")
    prop = block.get("property")
    if prop:
        term, _, code = str(prop).partition("::")
        q.property = (term, code)
    for item in (block.get("list") or {}).values():
        extra = set(item) - {"units", "magnitude", "precision"}
        if extra:
            raise r.err(f"C_QUANTITY_ITEM keys {sorted(extra)} not supported")
        q.units.append({"units": item.get("units"), "magnitude": item.get("magnitude"),
                        "precision": item.get("precision")})
    if block.get("assumed_value"):
        q.assumed = dict(block["assumed_value"])
    return q


def _parse_ordinal(r: _Reader) -> CObject:
    items = []
    while True:
        r.ws()
        m = re.compile(r"([+\-]?\d+(?:\.\d+)?)\s*\|\s*").match(r.s, r.i)
        if not m:
            raise r.err("expected an ordinal 'value|[terminology::code]'")
        r.i = m.end()
        cp = r.code_phrase()
        if len(cp.codes) != 1:
            raise r.err("an ordinal symbol has exactly one code")
        items.append((m.group(1), cp.terminology, cp.codes[0]))
        if r.at(","):
            r.eat(",")
            continue
        break
    assumed = None
    if r.at(";"):
        r.eat(";")
        r.ws()
        m = re.compile(r"[+\-]?\d+(?:\.\d+)?").match(r.s, r.i)
        if not m:
            raise r.err("expected the assumed ordinal value")
        r.i = m.end()
        assumed = m.group(0)
    scale = any("." in v for v, _, _ in items)
    if assumed is not None and assumed not in {v for v, _, _ in items}:
        raise r.err(f"assumed value {assumed} is not in the list")
    return CObject("scale" if scale else "ordinal", "DV_SCALE" if scale else "DV_ORDINAL",
                   ordinals=items, assumed=assumed)


def _parse_primitive(r: _Reader, owner_rm: str, attr: str) -> CObject:
    start = r.i
    j = r.i
    in_str = False
    while j < len(r.s):
        c = r.s[j]
        if in_str:
            if c == "\\":
                j += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c == "/" and r.s[start:j].strip() == "":
            j = _scan_regex(r.s, j) - 1
        elif c == "}":
            break
        j += 1
    text = r.s[start:j].strip()
    r.i = j
    ptype = PRIMITIVE_TYPES.get((owner_rm, attr))
    if ptype is None:
        raise r.err(f"primitive under {owner_rm}.{attr} not supported")
    raw, assumed = _split_assumed(text)
    return CObject("primitive", ptype, raw=raw, assumed=assumed)


def _split_assumed(text: str) -> tuple[str, str | None]:
    """'constraint; assumed' -> (constraint, assumed), ';' inside strings/regexes/intervals ignored."""
    in_str = in_rx = in_iv = False
    i = 0
    while i < len(text):
        c = text[i]
        if in_str:
            if c == "\\":
                i += 1
            elif c == '"':
                in_str = False
        elif in_rx:
            if c == "\\":
                i += 1
            elif c == "/":
                in_rx = False
        elif c == '"':
            in_str = True
        elif c == "/" and text[:i].strip() == "":
            in_rx = True
        elif c == "|":
            in_iv = not in_iv
        elif c == ";" and not in_iv:
            return text[:i].strip(), text[i + 1:].strip()
        i += 1
    return text, None


def _parse_attribute(r: _Reader, owner_rm: str) -> CAttribute:
    r.ws()
    if r.at("/"):
        raise r.err("attribute paths (differential ADL 1.5/2 form) not supported")
    name = r.word()
    a = CAttribute(name, name in MULTIPLE_ATTRS)
    if r.at_word("existence"):
        r.eat("existence")
        r.eat("matches")
        a.existence = r.interval()
    if r.at_word("cardinality"):
        r.eat("cardinality")
        r.eat("matches")
        lo, hi = r.interval()
        a.cardinality = (lo, hi, r._ordered)
        a.unique = r._unique
        a.multiple = True
    r.eat("matches")
    r.eat("{")
    while not r.at("}"):
        a.children.append(_parse_object(r, owner_rm, name))
    r.eat("}")
    return a


# --------------------------------------------------------------------------------------
# Whole archetypes
# --------------------------------------------------------------------------------------
_SECTION = re.compile(r"^(archetype|speciali[sz]e|concept|language|description|definition|invariant|rules|"
                      r"ontology|terminology|annotations|revision_history)[ \t]*(\(.*\))?[ \t]*$", re.M)


def _sections(text: str, source: str) -> dict[str, str]:
    marks = list(_SECTION.finditer(text))
    out = {}
    for k, m in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(text)
        key = "specialise" if m.group(1).startswith("speciali") else m.group(1)
        out[key] = text[m.end():end]
    for required in ("archetype", "concept", "definition", "ontology"):
        if required not in out:
            raise AdlError(f"{source}: no '{required}' section (ADL 1.4 expected)")
    for unsupported in ("invariant", "rules"):
        if out.get(unsupported, "").strip():
            raise AdlError(f"{source}: {unsupported} section not supported")
    return out


def parse_adl(text: str, source: str) -> Archetype:
    """Read one ADL 1.4 archetype as written (a specialised one is NOT flattened: see read_adl)."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n")
    sec = _sections(text, source)
    aid = sec["archetype"].split()[0]
    parent_id = sec["specialise"].split()[0] if "specialise" in sec else None
    m = re.search(r"\[(at[0-9.]+)\]", sec["concept"])
    if not m:
        raise AdlError(f"{source}: concept code not found")
    concept_code = m.group(1)
    r = _Reader(_strip_comments(sec["definition"]), source)
    root = _parse_object(r, "", "")
    r.ws()
    if r.i != len(r.s):
        raise r.err("trailing text after the root node")
    if root.kind != "complex" or root.node_id != concept_code:
        raise AdlError(f"{source}: root node [{root.node_id}] is not the concept [{concept_code}]")
    rm_from_id = aid.split(".")[0].split("-")[-1]
    if root.rm_type != rm_from_id:
        raise AdlError(f"{source}: root type {root.rm_type} does not match the archetype id {aid} (VARDT)")
    ontology = odin(sec["ontology"], f"{source}: ontology")
    term_defs = ontology.get("term_definitions") or {}
    if "en" not in term_defs:
        raise AdlError(f"{source}: no English term_definitions")
    terms = {code: {k: v for k, v in term.items()} for code, term in (term_defs["en"].get("items") or {}).items()}
    bindings: dict[str, dict[str, str]] = {}
    for terminology, block in (ontology.get("term_bindings") or ontology.get("term_binding") or {}).items():
        for code, cp in ((block or {}).get("items") or {}).items():
            # global at-code bindings only; path bindings are left out of the OPT
            if re.fullmatch(r"at[0-9.]+", code) and isinstance(cp, str) and "::" in cp:
                bindings.setdefault(terminology, {})[code] = cp.split("::", 1)[1]
    concept = (terms.get(concept_code) or {}).get("text")
    if not concept:
        raise AdlError(f"{source}: concept [{concept_code}] has no English term (VARCN)")
    return Archetype(aid, concept, root, terms, bindings, parent_id)


def read_adl(path: Path, *, flat: bool = True) -> Archetype:
    """Read an ADL 1.4 file; a specialised archetype is flattened onto its parent (looked up as
    PARENT_ID.adl beside it, recursively), as the template builder needs the flat form."""
    arch = parse_adl(path.read_text(encoding="utf-8-sig"), path.name)
    if arch.parent_id and flat:
        parent_path = path.with_name(f"{arch.parent_id}.adl")
        if not parent_path.exists():
            raise AdlError(f"{path.name}: parent archetype {arch.parent_id} not found beside it")
        arch = flatten(read_adl(parent_path), arch)
    check_terms(arch)
    check_internal_refs(arch)
    return arch


# --------------------------------------------------------------------------------------
# Specialisation
# --------------------------------------------------------------------------------------
def code_parent(code: str) -> str | None:
    """at0003.1 -> at0003 (what it specialises); at0.1 (new at level 1) and at0003 -> None."""
    if "." not in code:
        return None
    head = code.rsplit(".", 1)[0]
    if re.fullmatch(r"at0+(\.0+)*", head) and not re.fullmatch(r"at0000(\.\d+)*", head):
        return None  # at0.N: a node new in this specialisation
    return head


def _specialises(child_code: str, parent_code: str) -> bool:
    c = child_code
    while c is not None:
        if c == parent_code:
            return True
        c = code_parent(c)
    return False


def _conforms(child_rm: str, parent_rm: str) -> bool:
    base = lambda t: t.split("<")[0]  # noqa: E731
    if base(child_rm) == base(parent_rm):
        return True
    seen, todo = set(), [base(child_rm)]
    while todo:
        t = todo.pop()
        if t == base(parent_rm):
            return True
        if t not in seen:
            seen.add(t)
            todo.extend(RM_SUBTYPES.get(t, ()))
    return False


def _within(child: tuple | None, parent: tuple | None) -> bool:
    if child is None or parent is None:  # an internal reference without occurrences takes its target's
        return True
    lo_c, hi_c = child[0], child[1]
    lo_p, hi_p = parent[0], parent[1]
    return lo_c >= lo_p and (hi_p is None or (hi_c is not None and hi_c <= hi_p))


def flatten(parent: Archetype, child: Archetype) -> Archetype:
    """The flat form of a specialised ADL 1.4 archetype.

    ADL 1.4 specialisation rules (ADL 1.4 'Node Identification' and 'Specialise Section'; AOM 1.4
    specialisation_depth): a child node whose id is the parent's id (at0001) or specialises it
    (at0001.1, at0001.1.1) redefines that parent node and must conform to it (same RM type or an
    RM subtype, occurrences within the parent's, code lists within the parent's); a node coded
    at0.N is new at this level; any other code is an error. The child's definition is overlaid
    on the parent's: redefined nodes replace the parent's, identified parent nodes the child does
    not mention are inherited at their place, unidentified alternatives (e.g. the DV_TEXT under
    an ELEMENT.value) are taken from the child when it states any. CKM publishes specialised
    ADL 1.4 archetypes already in full, so for them the result is the child's own definition;
    the overlay still checks every node against the parent. Terms and bindings: the parent's,
    overridden by the child's.
    """
    src = child.archetype_id
    if not _specialises(child.definition.node_id, parent.definition.node_id):
        raise AdlError(f"{src}: root [{child.definition.node_id}] does not specialise "
                       f"{parent.archetype_id} [{parent.definition.node_id}]")
    definition = _overlay(parent.definition, child.definition, src, "/")
    terms = copy.deepcopy(parent.terms)
    terms.update(copy.deepcopy(child.terms))
    bindings = copy.deepcopy(parent.bindings)
    for terminology, items in child.bindings.items():
        bindings.setdefault(terminology, {}).update(items)
    return Archetype(child.archetype_id, child.concept, definition, terms, bindings, child.parent_id)


def _overlay(p: CObject, c: CObject, src: str, path: str) -> CObject:
    if not _conforms(c.rm_type, p.rm_type):
        raise AdlError(f"{src} {path}: {c.rm_type} does not conform to the parent's {p.rm_type}")
    if not _within(c.occurrences, p.occurrences):
        raise AdlError(f"{src} {path}: occurrences {c.occurrences} wider than the parent's {p.occurrences}")
    if c.kind != p.kind and not (p.kind == "complex" and p.any_allowed):
        raise AdlError(f"{src} {path}: a {c.kind} constraint cannot redefine a {p.kind} one")
    if c.kind == "code_phrase" and p.codes:
        if c.terminology != p.terminology:
            raise AdlError(f"{src} {path}: terminology {c.terminology} redefines {p.terminology}")
        extra = [code for code in c.codes if not any(_specialises(code, pc) for pc in p.codes)]
        if extra or not c.codes:
            raise AdlError(f"{src} {path}: codes {extra or 'any'} are not in the parent's list {p.codes}")
    if c.kind != "complex":
        return copy.deepcopy(c)
    out = copy.copy(c)
    if c.any_allowed:  # '{*}' adds nothing: the parent's constraints stay
        out.attributes = copy.deepcopy(p.attributes)
        out.any_allowed = p.any_allowed
        return out
    p_attrs = {a.name: a for a in p.attributes}
    attrs = []
    for ca in c.attributes:
        pa = p_attrs.get(ca.name)
        attrs.append(copy.deepcopy(ca) if pa is None else _overlay_attr(pa, ca, src, f"{path}{ca.name}"))
    mentioned = {a.name for a in c.attributes}
    attrs += [copy.deepcopy(pa) for pa in p.attributes if pa.name not in mentioned]
    out.attributes = attrs
    return out


def _overlay_attr(pa: CAttribute, ca: CAttribute, src: str, path: str) -> CAttribute:
    out = copy.copy(ca)
    if ca.existence is None:
        out.existence = pa.existence
    elif pa.existence and not _within(ca.existence, pa.existence):
        raise AdlError(f"{src} {path}: existence {ca.existence} wider than the parent's {pa.existence}")
    if ca.cardinality is None:
        out.cardinality, out.unique = pa.cardinality, pa.unique
    out.multiple = ca.multiple or pa.multiple
    identified = [o for o in pa.children if o.node_id]
    children: list[CObject] = []
    matched: dict[int, int] = {}  # id(parent object) -> index in children
    for co in ca.children:
        where = f"{path}[{co.node_id}]" if co.node_id else path
        if co.node_id:
            po = next((o for o in identified if _specialises(co.node_id, o.node_id)), None)
            if po is None:
                if "." not in co.node_id or code_parent(co.node_id) is not None:
                    raise AdlError(f"{src} {where}: [{co.node_id}] is neither a node of the parent "
                                   f"here nor a new node (at0.N)")
                children.append(copy.deepcopy(co))  # new in this specialisation
                continue
        else:
            alts = [o for o in pa.children if not o.node_id]
            po = next((o for o in alts if _conforms(co.rm_type, o.rm_type) and o.kind == co.kind), None) or \
                next((o for o in alts if _conforms(co.rm_type, o.rm_type)), None)
            if po is None:
                if alts:
                    raise AdlError(f"{src} {where}: {co.rm_type} conforms to none of the parent's "
                                   f"{[o.rm_type for o in alts]}")
                children.append(copy.deepcopy(co))
                continue
        matched.setdefault(id(po), len(children))
        children.append(_overlay(po, co, src, where))
    # identified parent nodes the child does not mention are inherited, after their predecessor
    for k, po in enumerate(pa.children):
        if not po.node_id or id(po) in matched:
            continue
        at = 0
        for prev in reversed(pa.children[:k]):
            if id(prev) in matched:
                at = matched[id(prev)] + 1
                break
        children.insert(at, copy.deepcopy(po))
        matched = {key: (i + 1 if i >= at else i) for key, i in matched.items()}
        matched[id(po)] = at
    out.children = children
    return out


# --------------------------------------------------------------------------------------
# Validity
# --------------------------------------------------------------------------------------
def walk(obj: CObject):
    """Every C_OBJECT of the tree, depth first."""
    yield obj
    for a in obj.attributes:
        for ch in a.children:
            yield from walk(ch)


def check_terms(arch: Archetype) -> None:
    """VATDF: every node id and every local code used in the definition has an English term."""
    missing = set()
    for o in walk(arch.definition):
        if o.node_id and o.node_id not in arch.terms:
            missing.add(o.node_id)
        if o.kind == "code_phrase" and o.terminology == "local":
            missing.update(c for c in o.codes + ([o.assumed] if o.assumed else []) if c not in arch.terms)
        if o.kind in ("ordinal", "scale"):
            missing.update(code for _, term, code in o.ordinals if term == "local" and code not in arch.terms)
    if missing:
        raise AdlError(f"{arch.archetype_id}: codes without an English term (VATDF): {sorted(missing)}")


_PATH_STEP = re.compile(r"/([a-z_]+)(?:\[(at[0-9.]+)\])?")


def resolve(root: CObject, path: str) -> CObject:
    """The C_OBJECT at an archetype path such as /data[at0001]/events[at0010]/data[at0003]."""
    obj = root
    pos = 0
    while pos < len(path):
        m = _PATH_STEP.match(path, pos)
        if not m:
            raise AdlError(f"bad path {path!r}")
        pos = m.end()
        attr = next((a for a in obj.attributes if a.name == m.group(1)), None)
        if attr is None:
            raise AdlError(f"path {path!r}: no attribute {m.group(1)!r}")
        if m.group(2):
            hits = [o for o in attr.children if o.node_id == m.group(2)]
        else:
            hits = attr.children if len(attr.children) == 1 else []
        if len(hits) != 1:
            raise AdlError(f"path {path!r}: {m.group(0)!r} does not name one object")
        obj = hits[0]
    return obj


def check_internal_refs(arch: Archetype) -> None:
    """VDFPT: every use_node names an existing node of its own type."""
    for o in walk(arch.definition):
        if o.kind == "internal_ref":
            try:
                target = resolve(arch.definition, o.target_path)
            except AdlError as e:
                raise AdlError(f"{arch.archetype_id}: use_node {o.target_path}: {e}") from None
            if target.rm_type != o.rm_type or target.kind != "complex":
                raise AdlError(f"{arch.archetype_id}: use_node {o.rm_type} {o.target_path} names a {target.rm_type}")
