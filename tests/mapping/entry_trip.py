"""The round trip the row tests share: a composition's entries to FHIR and back, the composition level set aside.

Encounter and Composition come from the composition itself, not from its entries, so a row's
round trip compares only the entries' resources and the entries rebuilt from them.
"""
from __future__ import annotations

import copy

from sync.mapping import compare_clinical, to_fhir, to_openehr

COMPOSITION_LEVEL = ("Encounter", "Composition")


def entry_resources(comp: dict, args: dict) -> list[dict]:
    """The resources the composition's entries make (``args``: to_fhir's site, ehr id, patient)."""
    return [r for r in to_fhir(comp, **args).resources if r["resourceType"] not in COMPOSITION_LEVEL]


def trip(comp: dict, args: dict) -> tuple[list[dict], dict]:
    """The entries' resources and the composition rebuilt from them alone."""
    mapped = entry_resources(comp, args)
    return mapped, to_openehr(mapped, template_id="t")


def same(comp: dict, back: dict) -> list:
    """The clinical differences between the entries sent and the entries rebuilt (empty: the same)."""
    return compare_clinical({"content": comp["content"]}, {"content": back["content"]})


def again(composition: dict, args: dict, uid: str) -> list[dict]:
    """The entries' resources of the same content under another composition uid (determinism checks)."""
    return entry_resources({**copy.deepcopy(composition), "uid": {"value": uid}}, args)
