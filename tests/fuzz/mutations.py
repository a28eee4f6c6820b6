"""Hypothesis strategies for malformed openEHR compositions and FHIR resources.

Each strategy starts from a valid document (the corpus canonical compositions,
the oncology fixture, the FHIR examples) and breaks it one way, named by a
category. A drawn case is a ``Case``: the category, the body as the server
would send it (bytes: duplicate keys, NaN and invalid UTF-8 exist only on the
wire), and the strings it injected, which no error text may repeat.

Injected strings carry a recognisable marker (``ZQX`` + letters) so a leak of
one into an error message, an attempt row or a log line is found by substring.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from tests.fixtures import FHIR_CORPUS, OPENEHR_CORPUS

REPO = Path(__file__).resolve().parents[2]
COMPOSITIONS = OPENEHR_CORPUS / "compositions"
FHIR_DIR = FHIR_CORPUS
ONCOLOGY = REPO / "tests" / "fixtures" / "oncology" / "oncology_encounter.composition.json"

# Seeds that sync as they are (the medication list and statement compositions map to
# nothing, so they would only test "unmapped"; lab_laborbefund's '..mol/l' is not UCUM,
# so the engine refuses it unmutated: tests/unit/test_rm_units.py).
COMPOSITION_SEEDS = [
    "encounter_body_temperature_multi",
    "kds_diagnosis.patient1",
    "kds_encounter_case.patient3",
    "kds_lab_report.patient1",
    "kds_procedure.patient3-3",
    "lab_blood_gas",
    "oncology_encounter",
]
RESOURCE_SEEDS = [
    "condition_malignancy_f202",
    "observation_vitals_body_temperature",
    "observation_vitals_blood_pressure",
    "observation_vitals_heart_rate",
    "observation_lab_glucose_f001",
    "procedure_biopsy",
    "medicationrequest_0301",
    "riskassessment_polygenic_brca",
]
MANDATORY_OPENEHR = ("archetype_node_id", "name", "_type", "value", "magnitude", "units")
MARKER = "ZQX"
MB = 1024 * 1024
DEPTH = 1000

OPENEHR_CATEGORIES = [
    "wrong_type", "missing_mandatory", "unknown_archetype", "bad_units", "huge_string", "bad_text",
    "invalid_utf8", "deep_nesting", "nan_infinity", "duplicate_keys", "bad_date", "null_flavour_with_value",
    "cyclic_reference", "empty_content",
]
FHIR_CATEGORIES = [
    "wrong_resource_type", "bad_reference", "invalid_code", "wrong_value_type", "missing_mandatory",
    "huge_string", "bad_text", "invalid_utf8", "deep_nesting", "nan_infinity", "duplicate_keys", "bad_date",
    "cyclic_reference",
]


@dataclass
class Case:
    """One malformed input as the server would send it."""

    category: str
    seed: str
    body: bytes
    secrets: list[str] = field(default_factory=list)
    note: str = ""

    def document(self) -> Any:
        """The body as a JSON client parses it (None when it does not parse)."""
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):
            return None


# ------------------------------------------------------------------ seeds
@lru_cache(maxsize=None)
def _seed_text(kind: str, name: str) -> str:
    if kind == "openehr":
        path = ONCOLOGY if name == "oncology_encounter" else COMPOSITIONS / f"{name}.composition.json"
    else:
        path = FHIR_DIR / f"{name}.json"
    return path.read_text()


def composition_seed(name: str, vo_uid: str) -> dict:
    """A corpus composition as EHRbase returns it: with the uid of its version."""
    doc = json.loads(_seed_text("openehr", name))
    doc["uid"] = {"_type": "OBJECT_VERSION_ID", "value": f"{vo_uid}::site1::1"}
    return doc


def resource_seed(name: str) -> dict:
    return json.loads(_seed_text("fhir", name))


# ------------------------------------------------------------------ tree helpers
def walk(node: Any, path: tuple = ()):
    """Every (path, value) below ``node``; a path is a tuple of keys / indexes."""
    stack = [(path, node)]
    while stack:
        p, value = stack.pop()
        yield p, value
        if isinstance(value, dict):
            stack.extend((p + (k,), v) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((p + (i,), v) for i, v in reversed(list(enumerate(value))))


def get(doc: Any, path: tuple) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def put(doc: Any, path: tuple, value: Any) -> None:
    get(doc, path[:-1])[path[-1]] = value


def _pick(draw, items: list, label: str):
    if not items:
        return None
    return items[draw(st.integers(0, len(items) - 1), label=label)]


def _content_paths(doc: dict, pred) -> list[tuple]:
    """Paths matching ``pred`` inside the clinical part (content/context), else anywhere."""
    hits = [p for p, v in walk(doc) if p and pred(p, v)]
    inner = [p for p in hits if p[0] in ("content", "context")]
    return inner or hits


def secret_text(draw, size: int = 10) -> str:
    tail = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=size, max_size=size), label="secret")
    return f"{MARKER}{tail}"


def _wrong_for(draw, value: Any, secret: str) -> Any:
    """A JSON value of another type than ``value``."""
    options: list[Any] = [None, 7, -1.5, True, [], {}, [secret], {"value": secret}, secret]
    options = [o for o in options if type(o) is not type(value) and not (isinstance(o, bool) and isinstance(value, bool))]
    return options[draw(st.integers(0, len(options) - 1), label="wrong value")]


def _dump(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")


# ------------------------------------------------------------------ openEHR mutations
def _m_wrong_type(draw, doc, secret):
    path = _pick(draw, _content_paths(doc, lambda p, v: not isinstance(p[-1], int) or True), "path")
    put(doc, path, _wrong_for(draw, get(doc, path), secret))
    return "/".join(map(str, path))


def _m_missing_mandatory(draw, doc, secret):
    key = draw(st.sampled_from(MANDATORY_OPENEHR), label="key")
    path = _pick(draw, _content_paths(doc, lambda p, v: p[-1] == key), "path")
    if path is None:  # e.g. no DV_QUANTITY in this seed: drop the root's instead
        doc.pop("archetype_node_id", None)
        return "/archetype_node_id"
    del get(doc, path[:-1])[key]
    return "/".join(map(str, path))


def _m_unknown_archetype(draw, doc, secret):
    """Every archetyped node (entries, clusters, maybe the root) names an archetype we have no mapping for."""
    suffix = draw(st.sampled_from(["fuzz_unknown.v1", "blood_pressure.v99", "x.v1"]), label="archetype")
    root_too = draw(st.booleans(), label="root")
    for p, v in walk(doc):
        if isinstance(v, dict) and str(v.get("archetype_node_id", "")).startswith("openEHR-EHR-"):
            if p == () and not root_too:
                continue
            kind = v["archetype_node_id"].split(".")[0]
            v["archetype_node_id"] = f"{kind}.{suffix}"
            details = v.get("archetype_details")
            if isinstance(details, dict) and isinstance(details.get("archetype_id"), dict):
                details["archetype_id"]["value"] = v["archetype_node_id"]
    return "archetypes"


def _quantity_paths(doc):
    return _content_paths(doc, lambda p, v: isinstance(v, dict) and v.get("_type") == "DV_QUANTITY")


def _m_bad_units(draw, doc, secret):
    path = _pick(draw, _quantity_paths(doc), "quantity")
    bad = draw(st.sampled_from(["", " ", "degrees celsius per fortnight " + secret, "mm[Hg", secret * (MB // 13)]),
               label="units")
    if path is None:
        path = _pick(draw, _content_paths(doc, lambda p, v: isinstance(v, dict) and "archetype_node_id" in v), "node")
        get(doc, path)["value"] = {"_type": "DV_QUANTITY", "magnitude": 1.0, "units": bad}
    else:
        get(doc, path)["units"] = bad
    return "/".join(map(str, path))


def _string_paths(doc):
    return _content_paths(doc, lambda p, v: isinstance(v, str) and p[-1] not in ("_type",))


def _m_huge_string(draw, doc, secret):
    path = _pick(draw, _string_paths(doc), "string")
    put(doc, path, (secret + " ") * (MB // (len(secret) + 1) + 1))
    return "/".join(map(str, path))


def _m_bad_text(draw, doc, secret):
    """NUL, lone surrogates and other code points no database text column takes."""
    path = _pick(draw, _string_paths(doc), "string")
    bad = draw(st.sampled_from(["\x00", "\ud800", "\udfff", "a\x00b\ud83d", "\ufffe\x00"]), label="bad")
    put(doc, path, secret + bad)
    return "/".join(map(str, path))


def _m_deep_nesting(draw, doc, secret):
    """DEPTH levels below a random node; spliced in as text (the stdlib encoder itself stops near 1000)."""
    path = _pick(draw, _content_paths(doc, lambda p, v: isinstance(v, (dict, list))), "path")
    as_list = draw(st.booleans(), label="lists")
    leaf = json.dumps({"_type": "CLUSTER", "value": secret})
    if as_list:
        deep = "[" * DEPTH + leaf + "]" * DEPTH
    else:
        deep = '{"_type": "CLUSTER", "archetype_node_id": "at0000", "items": [' * DEPTH + leaf + "]}" * DEPTH
    node = get(doc, path)
    placeholder = f"__deep_{secret}__"
    if isinstance(node, dict):
        node["items"] = placeholder
    else:
        node.append(placeholder)
    _SPLICE[placeholder] = deep
    return "/".join(map(str, path))


_SPLICE: dict[str, str] = {}


def _splice(body: bytes) -> bytes:
    for placeholder in [p for p in _SPLICE if p.encode() in body]:
        body = body.replace(json.dumps(placeholder).encode(), _SPLICE.pop(placeholder).encode())
    return body


def _m_nan_infinity(draw, doc, secret):
    nums = _content_paths(doc, lambda p, v: isinstance(v, (int, float)) and not isinstance(v, bool))
    path = _pick(draw, nums, "number") or _pick(draw, _string_paths(doc), "string")
    put(doc, path, draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]), label="nan"))
    return "/".join(map(str, path))


def _m_bad_date(draw, doc, secret):
    dates = _content_paths(
        doc, lambda p, v: isinstance(v, dict) and v.get("_type") in ("DV_DATE_TIME", "DV_DATE", "DV_TIME")
    )
    path = _pick(draw, dates, "date")
    bad = draw(st.sampled_from(["2024-13-45T25:61:00Z", "yesterday", "", "0000-00-00", "2024-02-30", secret,
                                "99999999999999999999", "2024-01-01T10:00:00+99:00"]), label="date")
    if path is None:
        path = ("context", "start_time")
        doc.setdefault("context", {})["start_time"] = {"_type": "DV_DATE_TIME", "value": bad}
    else:
        get(doc, path)["value"] = bad
    return "/".join(map(str, path))


def _m_null_flavour_with_value(draw, doc, secret):
    elements = _content_paths(doc, lambda p, v: isinstance(v, dict) and v.get("_type") == "ELEMENT" and "value" in v)
    path = _pick(draw, elements, "element")
    element = get(doc, path)
    element["null_flavour"] = {"_type": "DV_CODED_TEXT", "value": secret,
                               "defining_code": {"terminology_id": {"value": "openehr"}, "code_string": "271"}}
    return "/".join(map(str, path))


def _m_cyclic_reference(draw, doc, secret):
    """Entries that point at themselves: a link to the own uid, a node id that repeats its parent's."""
    uid = doc["uid"]["value"]
    entries = _content_paths(doc, lambda p, v: isinstance(v, dict) and str(v.get("archetype_node_id", "")).startswith(
        "openEHR-EHR-"))
    path = _pick(draw, entries, "entry")
    entry = get(doc, path)
    how = draw(st.sampled_from(["self_link", "same_uid", "work_flow_id", "self_items"]), label="how")
    ref = {"_type": "OBJECT_REF", "namespace": "local", "type": "COMPOSITION", "id": {"_type": "OBJECT_VERSION_ID", "value": uid}}
    if how == "self_link":
        entry["links"] = [{"_type": "LINK", "meaning": {"_type": "DV_TEXT", "value": secret},
                           "type": {"_type": "DV_TEXT", "value": "self"},
                           "target": {"_type": "DV_EHR_URI", "value": f"ehr:/{uid}"}}]
    elif how == "same_uid":
        entry["uid"] = {"_type": "HIER_OBJECT_ID", "value": uid}
        doc["uid"] = {"_type": "OBJECT_VERSION_ID", "value": uid}
    elif how == "work_flow_id":
        entry["work_flow_id"] = ref
    else:
        # a JSON "cycle": the entry lists a copy of itself among its own items, same node id
        entry.setdefault("items", []).append(copy.deepcopy(entry))
    return "/".join(map(str, path)) + f" ({how})"


def _m_empty_content(draw, doc, secret):
    how = draw(st.sampled_from(["empty_list", "missing", "null", "object", "empty_entries"]), label="how")
    if how == "empty_list":
        doc["content"] = []
    elif how == "missing":
        doc.pop("content", None)
    elif how == "null":
        doc["content"] = None
    elif how == "object":
        doc["content"] = {}
    else:
        for p, v in walk(doc):
            if isinstance(v, dict) and v.get("_type") in ("OBSERVATION", "EVALUATION", "ACTION", "INSTRUCTION"):
                for key in ("data", "protocol", "description", "activities", "ism_transition"):
                    v.pop(key, None)
    return how


def _duplicate_keys(draw, doc, secret) -> bytes:
    """A JSON text in which some object repeats a key; the last (bad) value wins in most parsers."""
    objects = _content_paths(doc, lambda p, v: isinstance(v, dict) and v)
    path = _pick(draw, objects, "object")
    key = draw(st.sampled_from(sorted(get(doc, path))), label="key")
    marker = f"__dup_{secret}__"
    get(doc, path)[marker] = None
    text = json.dumps(doc, ensure_ascii=False)
    bad = json.dumps(_wrong_for(draw, get(doc, path)[key], secret))
    good = json.dumps(get(doc, path)[key], ensure_ascii=False)
    first_last = draw(st.booleans(), label="bad last")
    pair = f'"{key}": {good}, "{key}": {bad}' if first_last else f'"{key}": {bad}, "{key}": {good}'
    return text.replace(f'"{marker}": null', pair, 1).encode("utf-8")


def _invalid_utf8(draw, doc, secret) -> bytes:
    path = _pick(draw, _string_paths(doc), "string")
    put(doc, path, secret + "\ue000")
    raw = _dump(doc)
    bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c", b"\x80"]), label="bytes")
    return raw.replace("\ue000".encode(), bad, 1)


_OPENEHR = {
    "wrong_type": _m_wrong_type,
    "missing_mandatory": _m_missing_mandatory,
    "unknown_archetype": _m_unknown_archetype,
    "bad_units": _m_bad_units,
    "huge_string": _m_huge_string,
    "bad_text": _m_bad_text,
    "deep_nesting": _m_deep_nesting,
    "nan_infinity": _m_nan_infinity,
    "bad_date": _m_bad_date,
    "null_flavour_with_value": _m_null_flavour_with_value,
    "cyclic_reference": _m_cyclic_reference,
    "empty_content": _m_empty_content,
}
_WIRE = {"duplicate_keys": _duplicate_keys, "invalid_utf8": _invalid_utf8}


@st.composite
def malformed_composition(draw, category: str, vo_uid: str = "00000000-0000-4000-8000-000000000000") -> Case:
    seed = draw(st.sampled_from(COMPOSITION_SEEDS), label="seed")
    doc = composition_seed(seed, vo_uid)
    secret = secret_text(draw)
    if category in _WIRE:
        return Case(category, seed, _WIRE[category](draw, doc, secret), [secret])
    note = _OPENEHR[category](draw, doc, secret)
    return Case(category, seed, _splice(_dump(doc)), [secret], note)


# ------------------------------------------------------------------ FHIR mutations
def _f_wrong_resource_type(draw, doc, secret):
    doc["resourceType"] = draw(
        st.sampled_from(["Observatoin", "observation", "", "Bundle", "OperationOutcome", secret, 42, None]),
        label="resourceType",
    )
    return "resourceType"


def _f_bad_reference(draw, doc, secret):
    refs = [p for p, v in walk(doc) if p and p[-1] == "reference"]
    path = _pick(draw, refs, "reference") or ("subject", "reference")
    bad = draw(st.sampled_from([
        "Patient/", "Patient", "/Patient/1", "Patient/1/_history/x", "http://", "#", "urn:uuid:not-a-uuid",
        f"Patient/{secret}", 17, {"reference": secret}, ["Patient/1"], None,
    ]), label="ref")
    if len(path) == 2 and path[0] == "subject" and "subject" not in doc:
        doc["subject"] = {}
    put(doc, path, bad)
    return "/".join(map(str, path))


def _f_invalid_code(draw, doc, secret):
    codes = [p for p, v in walk(doc) if p and p[-1] in ("status", "code", "intent", "gender", "use")
             and isinstance(v, str)]
    path = _pick(draw, codes, "code") or ("status",)
    put(doc, path, draw(st.sampled_from(["bogus", "", " final", "FINAL", secret, "a b", "x" * 300]), label="code"))
    return "/".join(map(str, path))


def _f_wrong_value_type(draw, doc, secret):
    """value[x] of the wrong shape: a string for a Quantity, a dict for a string, two choices at once."""
    how = draw(st.sampled_from(["quantity_string", "value_string_number", "two_choices", "value_plain",
                                "quantity_value_text", "effective_number"]), label="how")
    if how == "quantity_string":
        doc["valueQuantity"] = secret
    elif how == "value_string_number":
        doc["valueString"] = 37.5
    elif how == "two_choices":
        doc["valueQuantity"] = {"value": 1, "unit": "kg"}
        doc["valueString"] = secret
    elif how == "value_plain":
        doc["value"] = {"value": 1}
    elif how == "quantity_value_text":
        doc["valueQuantity"] = {"value": secret, "unit": "Cel"}
    else:
        doc["effectiveDateTime"] = 20240101
    return how


def _f_missing_mandatory(draw, doc, secret):
    keys = [k for k in ("status", "code", "subject", "resourceType", "intent", "patient", "medicationCodeableConcept")
            if k in doc]
    key = _pick(draw, keys, "key") or "resourceType"
    doc.pop(key, None)
    return key


def _f_bad_date(draw, doc, secret):
    dates = [p for p, v in walk(doc) if p and isinstance(p[-1], str) and
             (p[-1].endswith("DateTime") or p[-1] in ("issued", "start", "end", "recordedDate", "authoredOn", "date"))]
    path = _pick(draw, dates, "date") or ("effectiveDateTime",)
    put(doc, path, draw(st.sampled_from(["2024-13-45", "yesterday", "", "2024-02-30T10:00:00", secret,
                                         "2024-01-01T25:00:00Z"]), label="date"))
    return "/".join(map(str, path))


def _f_cyclic_reference(draw, doc, secret):
    """A resource whose references point at itself (hasMember, derivedFrom, partOf, focus)."""
    own = f"{doc.get('resourceType')}/{doc.get('id') or 'x'}"
    attr = draw(st.sampled_from(["hasMember", "derivedFrom", "partOf", "focus", "basedOn"]), label="attr")
    doc[attr] = [{"reference": own, "display": secret}, {"reference": own}]
    return attr


def _generic(fn):
    """Re-use an openEHR tree mutation on a FHIR resource (huge strings, bad text, nesting, NaN)."""
    return fn


_FHIR = {
    "wrong_resource_type": _f_wrong_resource_type,
    "bad_reference": _f_bad_reference,
    "invalid_code": _f_invalid_code,
    "wrong_value_type": _f_wrong_value_type,
    "missing_mandatory": _f_missing_mandatory,
    "huge_string": _m_huge_string,
    "bad_text": _m_bad_text,
    "deep_nesting": _m_deep_nesting,
    "nan_infinity": _m_nan_infinity,
    "bad_date": _f_bad_date,
    "cyclic_reference": _f_cyclic_reference,
}


@st.composite
def malformed_resource(draw, category: str, resource_id: str = "fuzz-1", patient_id: str = "1") -> Case:
    seed = draw(st.sampled_from(RESOURCE_SEEDS), label="seed")
    doc = resource_seed(seed)
    doc.pop("text", None)
    doc["id"] = resource_id
    doc["meta"] = {"versionId": "1"}
    for key in ("subject", "patient"):
        if key in doc:
            doc[key] = {"reference": f"Patient/{patient_id}"}
    secret = secret_text(draw)
    if category in _WIRE:
        return Case(category, seed, _WIRE[category](draw, doc, secret), [secret])
    note = _FHIR[category](draw, doc, secret)
    return Case(category, seed, _splice(_dump(doc)), [secret], note)
