"""The one definition of "same clinical content" for openEHR compositions and FHIR resources.

Everything is compared except this short list of non-clinical fields:

openEHR
  * ``uid`` anywhere (version / node identities), ``feeder_audit`` (audit details of the feeder system);
  * the ``_type`` of purely structural wrappers (HISTORY, ITEM_TREE/LIST/SINGLE/TABLE, CODE_PHRASE,
    TERMINOLOGY_ID, ARCHETYPE_ID, TEMPLATE_ID, ARCHETYPED, OBJECT_VERSION_ID, HIER_OBJECT_ID, TERM_MAPPING):
    canonical JSON may omit them and they carry no information the structure does not;
  * the decimal comma vs dot in ISO 8601 date/time values (the same instant, two ISO spellings);
  * the order of sibling nodes with *different* archetype node ids (template order, not meaning);
    the order of repeated nodes with the same node id (events, repeated elements) IS compared.

FHIR
  * ``id``, ``meta.lastUpdated``, ``meta.versionId``, ``meta.source``, ``meta.profile`` (a claim
    about conformance that the mapping derives from the content; servers and edits may drop
    entries, which is no clinical change; ``meta.tag``/``meta.security`` ARE compared), the narrative ``text``
    (generated from the structured data), identifiers in our ``urn:conflictdesk:source`` system
    (sync bookkeeping), the id part of references between resources (``Observation/<id>``
    -> ``Observation``; a bundle-internal ``urn:uuid:`` reference, which a server rewrites to
    ``Type/id``, -> its ``type``; Patient references are compared in full), a Reference.type that
    repeats what its reference says, and the order of
    ``coding`` entries inside a CodeableConcept (FHIR gives that order no meaning).

Numbers compare by value (72 == 72.0).  Everything else must match: values, units, codes,
terminology ids, times, time zones, null flavours, names.
"""
from __future__ import annotations

import re

from deepdiff import DeepDiff

from .terminology import SOURCE_SYSTEM

_STRUCTURAL = {"HISTORY", "ITEM_TREE", "ITEM_LIST", "ITEM_SINGLE", "ITEM_TABLE", "CODE_PHRASE", "TERMINOLOGY_ID",
               "ARCHETYPE_ID", "TEMPLATE_ID", "ARCHETYPED", "OBJECT_VERSION_ID", "HIER_OBJECT_ID", "TERM_MAPPING"}
_DROP_RM = {"uid", "feeder_audit"}
_TIME_TYPES = {"DV_DATE_TIME", "DV_TIME", "DV_DATE"}
_ISO_COMMA = re.compile(r"(\d{2}:\d{2}:\d{2}),(\d)")
# server bookkeeping, and profiles: a declaration derived from the content, not content (meta.tag and
# meta.security are compared: a confidentiality label matters)
_META_IGNORED = ("lastUpdated", "versionId", "source", "profile")


def normalise_rm(node):
    """clinical_content of any openEHR node or RM value (the residue compares and hashes with it)."""
    if isinstance(node, list):
        items = [normalise_rm(x) if isinstance(x, (dict, list)) else x for x in node]
        if items and all(isinstance(x, dict) and "archetype_node_id" in x for x in items):
            items.sort(key=lambda x: str(x["archetype_node_id"]))  # stable: same-id order kept
        return items
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k in _DROP_RM or (k == "_type" and v in _STRUCTURAL):
            continue
        out[k] = normalise_rm(v) if isinstance(v, (dict, list)) else v  # scalars as they are (hot path)
    if node.get("_type") in _TIME_TYPES and isinstance(out.get("value"), str):
        out["value"] = _ISO_COMMA.sub(r"\1.\2", out["value"])
    return out


_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z]+$")


def _ref_type(node: dict) -> str | None:
    """The resource type a Reference points to: ``Type`` of ``Type/id`` (relative or absolute URL), or
    the ``type`` of a bundle-internal ``urn:uuid:``/``urn:oid:`` reference (a server rewrites it to
    ``Type/id``); None for anything else."""
    ref = node.get("reference")
    if not isinstance(ref, str):
        return None
    if ref.startswith(("urn:uuid:", "urn:oid:")):
        return node["type"] if isinstance(node.get("type"), str) else None
    parts = ref.split("/_history/")[0].split("/")
    return parts[-2] if len(parts) >= 2 and _TYPE_NAME.match(parts[-2]) else None


def _norm_fhir(node, top=False):
    if isinstance(node, list):
        return [_norm_fhir(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {}
    target = _ref_type(node)
    for k, v in node.items():
        if top and k in ("id", "text"):
            continue
        if k == "type" and target is not None and v == target:
            continue  # Reference.type repeating what the reference says
        if k == "meta" and isinstance(v, dict):
            v = {mk: mv for mk, mv in v.items() if mk not in _META_IGNORED}
            if not v:
                continue
        if k == "identifier" and isinstance(v, list):
            v = [i for i in v if not (isinstance(i, dict) and i.get("system") == SOURCE_SYSTEM)]
            if not v:
                continue
        if k == "identifier" and isinstance(v, dict) and v.get("system") == SOURCE_SYSTEM:
            continue  # a single Identifier (Composition.identifier is 0..1): ours too
        if k == "reference" and isinstance(v, str) and target not in (None, "Patient"):
            v = target
        out[k] = _norm_fhir(v)
        if k == "coding" and isinstance(out[k], list):  # coding order carries no meaning in FHIR
            out[k] = sorted(out[k], key=lambda c: (str(c.get("system")), str(c.get("code"))) if isinstance(c, dict)
                            else ("", ""))
    return out


def clinical_content(obj: dict) -> dict:
    """Normalised copy of a composition, an entry, or a FHIR resource, for comparison.
    (The normalisers build new containers and never mutate their input: no deepcopy needed.)"""
    if isinstance(obj, dict) and "resourceType" in obj:
        return _norm_fhir(obj, top=True)
    return normalise_rm(obj)


def compare_clinical(a: dict, b: dict) -> list[dict]:
    """Differences in clinical content, as a list of {kind, path, left, right}; empty means equal."""
    ca, cb = clinical_content(a), clinical_content(b)
    if _same(ca, cb):
        return []  # fast path (most calls): DeepDiff only when there is a difference to name
    dd = DeepDiff(ca, cb, ignore_numeric_type_changes=True, verbose_level=2,
                  threshold_to_diff_deeper=0)  # always name the differing elements, never "root"
    out = []
    for kind, entries in dd.items():
        if isinstance(entries, dict):
            for path, change in entries.items():
                if isinstance(change, dict) and ("old_value" in change or "new_value" in change):
                    left, right = change.get("old_value"), change.get("new_value")
                elif kind.endswith("_removed"):
                    left, right = change, None
                else:
                    left, right = None, change
                out.append({"kind": kind, "path": path, "left": left, "right": right})
        else:
            for path in entries:
                out.append({"kind": kind, "path": str(path), "left": None, "right": None})
    return out


def same_content(norm_a, norm_b) -> bool:
    """compare_clinical(a, b) == [] for already normalised forms (clinical_content): the check without
    naming the differences."""
    return _same(norm_a, norm_b)


def same_value(a, b) -> bool:
    """Equality under the same rules, for small RM values (used by the residue)."""
    if a is None or b is None:
        return a is None and b is None
    return _same(normalise_rm(a), normalise_rm(b))  # DeepDiff's equality on JSON data: no second opinion needed


def element_path(deep: str) -> str:
    """A compare_clinical path into a FHIR resource (``root['component'][0]['valueQuantity']``) as a FHIR
    element path (``component[0].valueQuantity``): how the reverse losses and the guard name an element."""
    p = re.sub(r"\['([^']*)'\]", r".\1", deep.replace("root", "", 1))
    return p.lstrip(".")


def _same(a, b) -> bool:
    """Strict structural equality where numbers compare by value (72 == 72.0) and bool is not a
    number: True only when DeepDiff(ignore_numeric_type_changes=True) would find nothing."""
    ta = type(a)
    if ta is str:  # the common leaf first
        return type(b) is str and a == b
    if isinstance(a, dict):
        if not isinstance(b, dict) or a.keys() != b.keys():
            return False
        for k, v in a.items():
            w = b[k]
            if type(v) is str:
                if type(w) is not str or v != w:
                    return False
            elif not _same(v, w):
                return False
        return True
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and not isinstance(a, bool):
        return isinstance(b, (int, float)) and not isinstance(b, bool) and a == b
    return type(a) is type(b) and a == b
