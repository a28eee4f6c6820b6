"""The conflict's differing fields as a clinician reads them (pure; the diff itself is ``sync.workflow.diff``).

A row is titled with the clinical name of what differs: the LOINC / archetype
name of the observation for its value ("Body temperature"), the component's
own name inside a panel ("Systolic blood pressure"), "Dose" for a dosage;
other elements name the aspect ("Body temperature · status"). Each side's
value is shown as lines with units, and the lines that differ are marked (in
a blood pressure panel, only the systolic line when only systolic changed).
The technical paths stay available behind a disclosure.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from sync.workflow import diff
from sync.workflow.content import resource_key

from . import render

# FHIR element -> the words a clinician uses for it (after the thing's own name).
ASPECTS = {
    "status": "status", "effectiveDateTime": "time", "effectivePeriod": "time", "effectiveInstant": "time",
    "issued": "issued", "note": "note", "interpretation": "interpretation", "method": "method",
    "bodySite": "body site", "referenceRange": "reference range", "category": "category", "code": "code",
    "dataAbsentReason": "why no value", "onsetDateTime": "onset", "onsetPeriod": "onset",
    "abatementDateTime": "resolved", "clinicalStatus": "clinical status", "verificationStatus": "verification",
    "stage": "stage", "severity": "severity", "performedDateTime": "performed", "performedPeriod": "performed",
    "authoredOn": "ordered on", "intent": "intent", "reasonCode": "reason", "outcome": "outcome",
    "prediction": "prediction", "period": "period", "class": "class", "type": "type", "date": "date",
    "title": "title", "section": "sections", "specimen": "specimen", "hasMember": "members",
    "conclusion": "conclusion", "conclusionCode": "conclusion", "result": "results",
}
# Elements whose change is the clinical value itself: the row takes the thing's own name.
_DOSE = {"dosageInstruction", "dosage"}
_KINDS = {"Observation": "Observation", "MedicationRequest": "Medication order",
          "MedicationStatement": "Medication statement", "MedicationAdministration": "Medication given",
          "Condition": "Diagnosis", "Procedure": "Procedure", "DiagnosticReport": "Lab report",
          "RiskAssessment": "Risk assessment", "Encounter": "Encounter", "Composition": "Document",
          "Specimen": "Specimen"}
_INDEX = re.compile(r"^\[(\d+)\]")
_NO_BASE = object()  # lines(): no base to compare with, so every touched line is marked
_REFERENCE = re.compile(r"^([A-Z][A-Za-z]+)/[A-Za-z0-9.-]{8,}$")


@dataclass
class Line:
    text: str
    changed: bool = False


@dataclass
class Row:
    field: diff.Field
    title: str
    context: str  # what it belongs to: "Observation · entry 1, event 1"
    site: list[Line]
    central: list[Line]
    base: list[Line]
    paths: list[str] = field(default_factory=list)  # the technical detail, behind a disclosure
    kept: str = ""  # resolved: 'site' or 'central'
    written: list[Line] = field(default_factory=list)  # resolved: the value the decision wrote


def rows(comparison: diff.Comparison, resolution=None) -> list[Row]:
    """One row per differing field; with a resolution, which side each field kept and the value written."""
    by_key = {resource_key(r): r for r in [*comparison.site_resources, *comparison.central_resources]}
    written_record = ((resolution.content or {}).get("record") or {}) if resolution is not None else {}
    out = []
    for f in comparison.fields:
        resource = by_key.get(f.key, {})
        changed = _changed_items(f)
        row = Row(
            field=f, title=title(f, resource), context=context(f, resource),
            site=lines(f.site, changed, against=f.base), central=lines(f.central, changed, against=f.base),
            base=lines(f.base, set()), paths=[f"{f.key}", *(f"{c.path}: {c.what}" for c in f.changes)],
        )
        if resolution is not None:
            row.kept = kept_side(f, resolution)
            row.written = lines(_at(written_record, f.key, f.element), set())
        out.append(row)
    return out


def kept_side(f: diff.Field, resolution) -> str:
    if resolution.choice == "keep_site":
        return diff.SITE
    if resolution.choice == "keep_central":
        return diff.CENTRAL
    return (resolution.field_choices or {}).get(f.id, diff.CENTRAL)


def name_of(resource: dict, key: str = "") -> str:
    """The thing's clinical name: its code's text or display (LOINC, SNOMED CT), else the archetype's."""
    for element in ("code", "medicationCodeableConcept", "type"):
        value = resource.get(element)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, dict) and render.concept(value):
            return render.concept(value)
    archetype = diff.short_key(key or resource_key(resource)) if (key or resource) else ""
    return archetype[:1].upper() + archetype[1:]


def title(f: diff.Field, resource: dict) -> str:
    name = name_of(resource, f.key)
    element = f.element
    if element is None:
        return name
    if element.startswith("value") or element == "valueQuantity":
        return name
    if element == "component":
        names = _component_names(f, resource)
        return ", ".join(names) if names else f"{name} (components)"
    if element in _DOSE:
        return "Dose"
    return f"{name} · {ASPECTS.get(element, _words(element))}"


def context(f: diff.Field, resource: dict) -> str:
    kind = _KINDS.get(resource.get("resourceType", ""), resource.get("resourceType", "Record"))
    where = diff.position(f.key.split("|")[-1])
    parts = [kind]
    if f.element in _DOSE or f.element == "component":
        parts.append(name_of(resource, f.key))
    if where:
        parts.append(where)
    if f.element is None:
        parts.append(_one_side(f))
    return " · ".join(p for p in parts if p)


def _one_side(f: diff.Field) -> str:
    """A thing one side lacks: removed there when the last synced version had it (a site's correction that drops an
    entry the centre edited reads as a deletion, as a whole-record deletion does), else added by the other side."""
    if f.site is None:
        return "removed at the site" if f.base is not None else "only centrally"
    if f.central is None:
        return "removed centrally" if f.base is not None else "only at the site"
    return "whole"


def lines(value, changed: set[int] | None = None, *, against=_NO_BASE) -> list[Line]:
    """A value as chart lines (units included).

    A line is marked when the diff touches it (``changed``: the list items it
    touches, None for all) and, given the base (``against``), when it moved
    away from the base: in a blood pressure panel whose systolic changed at
    the site, only the site's systolic line.
    """
    if value is None:
        return [Line("(absent)", changed != set() and against is not None)]
    if isinstance(value, list):
        base = against if isinstance(against, list) else None
        out = []
        for i, item in enumerate(value):
            touched = changed is None or i in changed
            moved = against is _NO_BASE or base is None or i >= len(base) or base[i] != item
            out.append(Line(_one(item), touched and moved))
        return out or [Line("(none)")]
    return [Line(_one(value), changed != set() and (against is _NO_BASE or value != against))]


def _one(value) -> str:
    if isinstance(value, dict) and "doseAndRate" in value or isinstance(value, dict) and "timing" in value:
        return _dosage(value)
    text = render.readable(value)
    if text is not None:
        return text
    if isinstance(value, dict):
        return "; ".join(f"{_words(k)}: {_one(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_one(v) for v in value)
    return str(value)


def _dosage(dosage: dict) -> str:
    parts = []
    if dosage.get("text"):
        parts.append(dosage["text"])
    for dr in dosage.get("doseAndRate", []):
        dose = dr.get("doseQuantity")
        if isinstance(dose, dict):
            parts.append(render.fhir_value(dose) or "")
        rng = dr.get("doseRange")
        if isinstance(rng, dict):
            parts.append(f"{render.fhir_value(rng.get('low', {})) or ''} – {render.fhir_value(rng.get('high', {})) or ''}")
    route = dosage.get("route")
    if isinstance(route, dict):
        parts.append(render.concept(route))
    repeat = (dosage.get("timing") or {}).get("repeat") or {}
    if repeat.get("frequency") and repeat.get("period"):
        parts.append(f"{repeat['frequency']}× per {repeat['period']} {repeat.get('periodUnit', '')}".strip())
    return " · ".join(p for p in parts if p) or str(dosage)


def _changed_items(f: diff.Field) -> set[int] | None:
    """Indexes of the list items the changes touch (None: not a list, or the whole list changed)."""
    found = set()
    for change in f.changes:
        rest = change.path[len(f.element or ""):] if f.element and change.path.startswith(f.element) else ""
        match = _INDEX.match(rest)
        if not match:
            return None
        found.add(int(match.group(1)))
    return found or None


def _component_names(f: diff.Field, resource: dict) -> list[str]:
    """The names of the changed components (from either side's list), in order."""
    idx = _changed_items(f)
    names = []
    for side in (f.central, f.site):
        if not isinstance(side, list):
            continue
        for i, item in enumerate(side):
            if (idx is None or i in idx) and isinstance(item, dict):
                name = render.concept(item.get("code"))
                if name and name not in names:
                    names.append(name)
    return names


def _at(record: dict, key: str, element: str | None):
    resource = record.get(key)
    return resource if element is None or not isinstance(resource, dict) else resource.get(element)


def _words(element: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r" \1", element).lower()


# --- the central column ------------------------------------------------------------

_ORDER = {"Composition": 3, "Encounter": 2}  # the clinical entries first, the document's frame last


def central_groups(resources: list[dict]) -> list[dict]:
    """The central version one resource at a time, titled by what it is, its id and version kept aside."""
    groups = []
    for r in sorted(resources, key=lambda r: _ORDER.get(r.get("resourceType", ""), 1)):
        key = resource_key(r)
        where = diff.position(key.split("|")[-1])
        groups.append({
            # The first row is the type and id: the heading says it. References to the other resources
            # (a document's entries) name what they point at, their ids stay in the disclosure.
            "resource": r, "rows": [_without_id(row) for row in render.resource_rows(r)[1:]],
            "kind": _KINDS.get(r.get("resourceType", ""), r.get("resourceType", "Resource")),
            "name": r.get("title") or name_of(r, key), "where": where,
            "ref": f"{r.get('resourceType')}/{r.get('id', '')}",
            "version": (r.get("meta") or {}).get("versionId", "?"),
        })
    return groups


def _without_id(row: render.Row) -> render.Row:
    match = _REFERENCE.match(row.value or "")
    if match:
        return render.Row(row.depth, row.label, f"{_KINDS.get(match.group(1), match.group(1))} (shown here)", row.code)
    return row
