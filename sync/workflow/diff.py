"""The field-level diff a clinician decides on, and the merge their choices produce (engine logic: the
decision action merges with it; the desk and the API only show it).

Both sides are brought to the engine's common clinical representation: the
site composition is mapped to FHIR (the same pure mapping the engine uses),
and every resource is reduced to its clinical content keyed by its source
identifier (the engine's ``record_content``). deepdiff over those two records
says exactly what differs.

A *field* is one top-level element of one resource (``valueQuantity``,
``effectiveDateTime``, ``status``...) or a whole resource present on one side
only. That is the unit a clinician chooses per merge: fine enough to mix a
site value with a central status, coarse enough that the merged resource is
always a well-formed copy of elements that existed on one side.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from deepdiff import DeepDiff

from sync.mapping import clinical_content, to_fhir
from sync.workflow.born import with_central_identity
from sync.workflow.content import record_content, resource_key

SITE, CENTRAL = "site", "central"
_PATH_PART = re.compile(r"\[('(?:[^'\\]|\\.)*'|\d+)\]")


_KIND_WORDS = {"values_changed": "changed", "type_changes": "changed type", "dictionary_item_added": "only at the site",
               "dictionary_item_removed": "only centrally", "iterable_item_added": "item only at the site",
               "iterable_item_removed": "item only centrally"}


@dataclass
class Change:
    """One deepdiff entry inside a field, with a readable path."""

    kind: str
    path: str
    site: object
    central: object

    @property
    def what(self) -> str:
        return _KIND_WORDS.get(self.kind, self.kind.replace("_", " "))


@dataclass
class Field:
    key: str  # the resource's source identifier
    element: str | None  # None: the whole resource exists on one side only
    label: str
    site: object
    central: object
    base: object
    changes: list[Change] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.key}::{self.element or '*'}"

    @property
    def changed_on(self) -> str:
        """Which side moved away from the base ('site', 'central' or 'both')."""
        site_moved, central_moved = self.site != self.base, self.central != self.base
        return "both" if site_moved and central_moved else SITE if site_moved else CENTRAL if central_moved else "both"


@dataclass
class Comparison:
    site_resources: list[dict]
    central_resources: list[dict]
    site_record: dict
    central_record: dict
    base_record: dict
    fields: list[Field]


def site_resources(conflict) -> list[dict]:
    """The site composition as the FHIR resources the engine would write for it."""
    link = conflict.record_link
    if not conflict.openehr_composition:
        return []
    result = to_fhir(
        conflict.openehr_composition,
        site=link.site.name,
        ehr_id=link.patient_link.ehr_id,
        patient_ref=f"Patient/{link.patient_link.fhir_patient_id}",
    )
    return with_central_identity(conflict.openehr_composition, list(result.resources))  # a central plan pairs up


def compare(conflict) -> Comparison:
    site_list = site_resources(conflict)
    central_list = list(conflict.fhir_resources or [])
    site_rec = record_content(site_list, clinical_content)
    central_rec = record_content(central_list, clinical_content)
    base_rec = conflict.base_content or {}
    labels = {resource_key(r): resource_label(r) for r in [*central_list, *site_list]}
    return Comparison(site_list, central_list, site_rec, central_rec, base_rec,
                      fields_between(site_rec, central_rec, base_rec, labels))


def fields_between(site_rec: dict, central_rec: dict, base_rec: dict, labels: dict | None = None) -> list[Field]:
    """Group deepdiff's entries by (resource, top-level element)."""
    labels = labels or {}
    dd = DeepDiff(central_rec, site_rec, ignore_numeric_type_changes=True, verbose_level=2)
    if "root" in (dd.get("values_changed") or {}):  # one side empty (a deletion): name each resource, not the record
        dd = DeepDiff(central_rec, site_rec, ignore_numeric_type_changes=True, verbose_level=2, threshold_to_diff_deeper=0)
    grouped: dict[tuple, Field] = {}
    for kind, entries in dd.items():
        items = entries.items() if isinstance(entries, dict) else ((p, None) for p in entries)
        for path, change in items:
            parts = split_path(path)
            key, element = parts[0], (parts[1] if len(parts) > 1 and isinstance(parts[1], str) else None)
            fid = (key, element)
            if fid not in grouped:
                grouped[fid] = Field(
                    key=key, element=element,
                    label=f"{labels.get(key, short_key(key))} · {element}" if element else labels.get(key, short_key(key)),
                    site=_at(site_rec, key, element), central=_at(central_rec, key, element),
                    base=_at(base_rec, key, element),
                )
            old, new = _sides(kind, change)
            grouped[fid].changes.append(Change(kind, readable(parts[1:]), site=new, central=old))
    return sorted(grouped.values(), key=lambda f: (f.key, f.element or ""))


def merged_resources(comparison: Comparison, choices: dict[str, str]) -> list[dict]:
    """Central resources with the elements (or whole resources) the clinician took from the site.

    ``choices`` maps ``Field.id`` to 'site' or 'central'; a field not named keeps the central value.
    """
    site_by_key = {resource_key(r): r for r in comparison.site_resources}
    merged = {resource_key(r): copy.deepcopy(r) for r in comparison.central_resources}
    for f in comparison.fields:
        if choices.get(f.id) != SITE:
            continue
        if f.element is None:
            if f.key in site_by_key:
                merged[f.key] = copy.deepcopy(site_by_key[f.key])
            else:
                merged.pop(f.key, None)
            continue
        target = merged.setdefault(f.key, copy.deepcopy(site_by_key.get(f.key, {})))
        source = site_by_key.get(f.key, {})
        if f.element in source:
            target[f.element] = copy.deepcopy(source[f.element])
        else:
            target.pop(f.element, None)
    return list(merged.values())


def split_path(path: str) -> list:
    """``root['a']['b'][0]`` -> ['a', 'b', 0]."""
    out = []
    for token in _PATH_PART.findall(path):
        out.append(int(token) if token.isdigit() else token[1:-1].replace("\\'", "'"))
    return out


def readable(parts: list) -> str:
    text = ""
    for p in parts:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else p)
    return text or "(whole resource)"


def short_key(key: str) -> str:
    """``site1|<uid>|/content[...OBSERVATION.pulse.v2]/data[at0002]/events[at0003]`` -> a short readable name."""
    path = key.split("|")[-1]
    archetypes = re.findall(r"openEHR-EHR-[A-Z_]+\.([a-z0-9_]+)\.v\d+", path)
    return archetypes[-1].replace("_", " ") if archetypes else path[-60:]


def resource_label(resource: dict) -> str:
    """'Observation Body temperature (entry 2, event 1)': the position tells repeated readings apart."""
    code = resource.get("code") or {}
    text = code.get("text") or next((c.get("display") for c in code.get("coding", []) if c.get("display")), None)
    key = resource_key(resource)
    name = text or short_key(key)
    where = position(key.split("|")[-1])
    return f"{resource.get('resourceType', 'Resource')} {name}" + (f" ({where})" if where else "")


def position(path: str) -> str:
    """``/content[..]:1/data[at0002]/events[at0003]`` -> 'entry 2, event 1'."""
    words = {"content": "entry", "events": "event", "items": "item"}
    found = re.findall(r"/(content|events|items)\[[^\]]+\](?::(\d+))?", path)
    return ", ".join(f"{words[attr]} {int(k or 0) + 1}" for attr, k in found)


def _at(record: dict, key: str, element: str | None):
    resource = record.get(key)
    if element is None or resource is None:
        return resource
    return resource.get(element)


def _sides(kind: str, change):
    if isinstance(change, dict) and ("old_value" in change or "new_value" in change):
        return change.get("old_value"), change.get("new_value")
    if kind.endswith("_removed"):
        return change, None
    return None, change
