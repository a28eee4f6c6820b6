"""A small FLAT-composition builder for the oncology template.

Every path segment below is a web-template node id of ``ConflictDesk Oncology Encounter.v2``
(the same ids ``tests/fixtures/oncology/oncology_encounter.v2.flat.json`` uses); the builder only
adds the ``:k`` sibling indices and the entry-level language/encoding every entry needs.
``tests/demo`` checks every key the generator writes against that fixture and, against a live
CDR, against the template's web template.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from .catalogue import Code

TEMPLATE_ID = "ConflictDesk Oncology Encounter.v2"  # v1 stays registered for data stored under it
ROOT = "conflictdesk_oncology_encounter"

# openEHR terminology codes the template fixes.
CATEGORY_EVENT = ("433", "event")
SETTING_SECONDARY_CARE = ("232", "secondary medical care")


def iso(when: datetime) -> str:
    """ISO 8601 with seconds and zone, the form EHRbase echoes back unchanged."""
    if when.tzinfo is None:
        raise ValueError("synthetic times carry a zone")
    return when.isoformat(timespec="seconds")


class FlatComposition:
    """Collects FLAT keys for one composition; ``entry`` hands out the next sibling index."""

    def __init__(self, start: datetime, *, facility: str, composer: str):
        self.values: dict[str, Any] = {}
        self._count: dict[str, int] = {}
        self.set("category", code=CATEGORY_EVENT[0], value=CATEGORY_EVENT[1], terminology="openehr")
        self.set("language", code="en", terminology="ISO_639-1")
        self.set("territory", code="GB", terminology="ISO_3166-1")
        self.values[f"{ROOT}/composer|name"] = composer
        self.values[f"{ROOT}/context/start_time"] = iso(start)
        self.set("context/setting", code=SETTING_SECONDARY_CARE[0], value=SETTING_SECONDARY_CARE[1],
                 terminology="openehr")
        self.values[f"{ROOT}/context/_health_care_facility|name"] = facility

    def set(self, path: str, value: Any = None, /, **attributes: Any) -> None:
        """``path`` relative to the root; attributes become ``|name`` suffixes."""
        if value is not None:
            self.values[f"{ROOT}/{path}"] = value
        for name, attribute in attributes.items():
            self.values[f"{ROOT}/{path}|{name}"] = attribute

    def coded(self, path: str, code: Code) -> None:
        self.set(path, code=code.code, value=code.value, terminology=code.terminology)

    def local(self, path: str, code: str, value: str) -> None:
        self.set(path, code=code, value=value, terminology="local")

    def quantity(self, path: str, magnitude: float, unit: str) -> None:
        self.set(path, magnitude=magnitude, unit=unit)

    def entry(self, node_id: str) -> str:
        """A new entry of ``node_id``; returns its path (``blood_pressure:1``) for further keys."""
        index = self._count.get(node_id, 0)
        self._count[node_id] = index + 1
        path = f"{node_id}:{index}"
        self.set(f"{path}/language", code="en", terminology="ISO_639-1")
        self.set(f"{path}/encoding", code="UTF-8", terminology="IANA_character-sets")
        return path

    def build(self) -> dict[str, Any]:
        return dict(self.values)


def normalise_key(key: str) -> str:
    """``a:3/b:0/c|unit`` -> ``a:#/b:#/c|unit``: the shape of a key, whatever its indices."""
    out = []
    for segment in key.split("/"):
        name, bar, attribute = segment.partition("|")
        base, colon, index = name.partition(":")
        out.append((base + (":#" if colon and index.isdigit() else colon + index)) + bar + attribute)
    return "/".join(out)
