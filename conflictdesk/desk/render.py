"""Both versions the way a clinician reads them: names, values with units, codes with display text, times.

Pure functions from canonical openEHR JSON / FHIR JSON to rows for the
templates; nothing here decides anything, so the raw JSON toggle and this
view always describe the same data.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.utils.dateparse import parse_datetime

_SKIP_RM = {"uid", "archetype_details", "feeder_audit", "language", "territory", "encoding", "subject", "provider",
            "category", "composer", "context", "name", "archetype_node_id", "_type", "origin"}
_SKIP_FHIR = {"resourceType", "id", "meta", "identifier", "text", "extension", "subject", "language"}
RESIDUE = "openehr-residue"
MCODE_SD = "http://hl7.org/fhir/us/mcode/StructureDefinition/"  # extensions that say clinical content (radiotherapy)
# Structural RM wrappers: their children are shown, they themselves say nothing to a clinician.
_STRUCTURAL = {"HISTORY", "ITEM_TREE", "ITEM_LIST", "ITEM_SINGLE", "ITEM_TABLE"}
# UCUM codes as printed on a chart.
UCUM_DISPLAY = {"Cel": "°C", "[degF]": "°F", "mm[Hg]": "mmHg", "/min": "/min", "{beats}/min": "/min", "%": "%",
                "kg": "kg", "cm": "cm", "g": "g", "mg": "mg", "ug": "µg", "mL": "mL", "L": "L", "m2": "m²",
                "mmol/L": "mmol/L", "mg/dL": "mg/dL", "g/dL": "g/dL", "10*9/L": "×10⁹/L", "U/L": "U/L"}


@dataclass
class Row:
    depth: int
    label: str
    value: str = ""
    code: str = ""  # archetype node id / coding, shown small


def when(text) -> str:
    """ISO 8601 -> '2020-10-06 13:30 (+02:00)'; anything unparseable is shown as given."""
    if not isinstance(text, str):
        return "" if text is None else str(text)
    moment = parse_datetime(text.replace(",", "."))
    if moment is None:
        return text
    offset = moment.strftime("%z")
    zone = f" ({offset[:3]}:{offset[3:]})" if offset else " (no time zone)"
    return moment.strftime("%Y-%m-%d %H:%M") + zone


# --- openEHR ---------------------------------------------------------------

def dv_value(dv: dict) -> tuple[str, str]:
    """(value text, code text) for one DATA_VALUE."""
    kind = dv.get("_type", "")
    if kind == "DV_QUANTITY":
        units = dv.get("units", "")
        return f"{_num(dv.get('magnitude'))} {UCUM_DISPLAY.get(units, units)}".strip(), ""
    if kind == "DV_CODED_TEXT":
        code = dv.get("defining_code") or {}
        term = (code.get("terminology_id") or {}).get("value", "")
        return str(dv.get("value", "")), f"{term}::{code.get('code_string', '')}"
    if kind in ("DV_DATE_TIME", "DV_DATE", "DV_TIME"):
        return when(dv.get("value")), ""
    if kind == "DV_PROPORTION":
        unit = "%" if dv.get("type") == 2 or dv.get("denominator") == 100 else f"/ {_num(dv.get('denominator'))}"
        return f"{_num(dv.get('numerator'))} {unit}", ""
    if kind == "DV_ORDINAL":
        symbol = dv.get("symbol") or {}
        return f"{dv.get('value')} {symbol.get('value', '')}".strip(), (symbol.get("defining_code") or {}).get("code_string", "")
    if kind == "DV_COUNT":
        return str(dv.get("magnitude")), ""
    if kind == "DV_BOOLEAN":
        return "yes" if dv.get("value") else "no", ""
    if kind == "DV_IDENTIFIER":
        return str(dv.get("id", "")), dv.get("type", "")
    if kind == "DV_DURATION":
        return str(dv.get("value", "")), ""
    if "value" in dv:
        return str(dv.get("value")), ""
    return "", ""


def composition_rows(composition: dict) -> list[Row]:
    """Header (template, composer, start time) then the tree of named nodes."""
    if not composition:
        return []
    rows = [Row(0, _name(composition), code=composition.get("archetype_node_id", ""))]
    template = ((composition.get("archetype_details") or {}).get("template_id") or {}).get("value")
    if template:
        rows.append(Row(1, "Template", template))
    composer = (composition.get("composer") or {}).get("name")
    if composer:
        rows.append(Row(1, "Composer", composer))
    start = ((composition.get("context") or {}).get("start_time") or {}).get("value")
    if start:
        rows.append(Row(1, "Start time", when(start)))
    for child in composition.get("content", []):
        _walk(child, 1, rows)
    return rows


def readable(value) -> str | None:
    """One line for a FHIR element value (diff cells), or None when only JSON will do."""
    if value is None:
        return "(absent)"
    if isinstance(value, (str, int, float, bool)):
        return when(value) if isinstance(value, str) and value[:4].isdigit() and "T" in value else str(value)
    if isinstance(value, dict):
        return _entry(value)
    if isinstance(value, list) and value:
        lines = [_entry(item) if isinstance(item, dict) else readable(item) for item in value]
        return None if any(line is None for line in lines) else "\n".join(lines)
    return None


def _entry(value: dict) -> str | None:
    """A component-like element ('Systolic blood pressure: 80.0 mmHg'), or one datatype."""
    key = next((k for k in value if k.startswith("value") and k != "value"), None)
    if "code" in value and isinstance(value["code"], dict) and key:
        shown = fhir_value(value[key]) if isinstance(value[key], dict) else str(value[key])
        return f"{concept(value['code'])}: {shown}" if shown is not None else None
    return fhir_value(value)


def _walk(node, depth: int, rows: list[Row]) -> None:
    if isinstance(node, list):
        for item in node:
            _walk(item, depth, rows)
        return
    if not isinstance(node, dict):
        return
    if node.get("_type") == "ELEMENT" or ("value" in node and isinstance(node.get("value"), dict) and "name" in node):
        value = node.get("value") or {}
        text, code = dv_value(value) if value else ((node.get("null_flavour") or {}).get("value", "no value"), "")
        rows.append(Row(depth, _name(node), text, code or node.get("archetype_node_id", "")))
        return
    named = "name" in node and "archetype_node_id" in node and node.get("_type") not in _STRUCTURAL
    if named:
        rows.append(Row(depth, _name(node), code=node.get("archetype_node_id", "")))
    if node.get("_type") in ("POINT_EVENT", "INTERVAL_EVENT") and node.get("time"):
        rows.append(Row(depth + 1, "Time", when(node["time"].get("value"))))
    for key, child in node.items():
        if key in _SKIP_RM or key == "time":
            continue
        if isinstance(child, (dict, list)):
            _walk(child, depth + (1 if named else 0), rows)


def _name(node: dict) -> str:
    return str((node.get("name") or {}).get("value") or node.get("archetype_node_id") or "")


# --- FHIR --------------------------------------------------------------------

def resource_rows(resource: dict) -> list[Row]:
    # what the resource is about: its code; a Goal has none, its description (a CodeableConcept) is the goal;
    # a ClinicalImpression has none either, its summary (a string) is what it says; a CarePlan is its title;
    # an AdverseEvent is its event (the CTCAE term); a List is its title (the list's name at the site, the code only
    # says which kind of list)
    title = "title" if resource.get("resourceType") == "List" and isinstance(resource.get("title"), str) \
        else "code" if "code" in resource else "event" if isinstance(resource.get("event"), dict) \
        else "description" if isinstance(resource.get("description"), dict) \
        else "summary" if isinstance(resource.get("summary"), str) \
        else "title" if isinstance(resource.get("title"), str) else "code"
    heading = resource[title] if title in ("summary", "title") else concept(resource.get(title))
    if resource.get("resourceType") == "Consent":  # no code: the consent's step at the site, else its category
        heading = _ism_step(resource) or concept((resource.get("category") or [None])[0])
    if resource.get("resourceType") == "ImagingStudy":  # no code: the study by its DICOM Study Instance UID
        heading = next((f"DICOM study {i['value'].removeprefix('urn:oid:')}" for i in resource.get("identifier") or []
                        if isinstance(i, dict) and i.get("system") == "urn:dicom:uid" and i.get("value")), heading)
    rows = [Row(0, resource.get("resourceType", "Resource"), heading or "",
                f"{resource.get('resourceType')}/{resource.get('id', '')} v{(resource.get('meta') or {}).get('versionId', '?')}")]
    for key, value in resource.items():
        if key in _SKIP_FHIR or key == title:
            continue
        _fhir_element(key, value, 1, rows)
    if resource.get("resourceType") == "CarePlan" and _ism_step(resource):  # the step its status folds
        rows.append(Row(1, "careflow step at the site", _ism_step(resource)))
    for ext in resource.get("extension", []):
        if str(ext.get("url", "")).startswith(MCODE_SD):
            _extension(ext, 1, rows)
    residue = [e for e in resource.get("extension", []) if RESIDUE in str(e.get("url", ""))]
    if residue:
        rows.append(Row(1, "openEHR detail kept in extensions", f"{len(residue)} item(s), see raw JSON"))
    return rows


def _ism_step(resource: dict) -> str:
    """The display of the openEHR careflow step our openehr-ism-transition extension keeps ('Informed consent
    provided'), or ''."""
    for ext in resource.get("extension", []):
        if str(ext.get("url", "")).endswith("/openehr-ism-transition"):
            for part in ext.get("extension", []):
                if part.get("url") == "careflowStep":
                    return (part.get("valueCoding") or {}).get("display") or ""
    return ""


def _extension(ext: dict, depth: int, rows: list[Row]) -> None:
    """An mCODE extension as its name and value, or its sub-extensions below it (modality and technique)."""
    label = str(ext.get("url", "")).rsplit("/", 1)[-1].removeprefix("mcode-").replace("-", " ")
    key = next((k for k in ext if k.startswith("value")), None)
    if key is None:
        rows.append(Row(depth, label))
        for sub in ext.get("extension", []):
            _extension(sub, depth + 1, rows)
        return
    value = ext[key]
    text = (fhir_value(value) or value.get("display")) if isinstance(value, dict) else str(value)
    rows.append(Row(depth, label, text or "", coding_codes(value) if isinstance(value, dict) else ""))


def _fhir_element(key: str, value, depth: int, rows: list[Row]) -> None:
    label = _label(key)
    if isinstance(value, list):
        for item in value:
            _fhir_element(key, item, depth, rows)
        return
    if isinstance(value, dict):
        text = fhir_value(value)
        if text is not None:
            rows.append(Row(depth, label, text, coding_codes(value)))
            return
        rows.append(Row(depth, label))
        for sub, item in value.items():
            if sub not in _SKIP_FHIR:
                _fhir_element(sub, item, depth + 1, rows)
        return
    rows.append(Row(depth, label, when(value) if _is_time(key) else str(value)))


def fhir_value(value: dict) -> str | None:
    """A one-line reading of common datatypes, or None for a structure to expand."""
    absent = [e.get("valueCode") for e in value.get("extension", [])
              if str(e.get("url")).endswith("/data-absent-reason")]
    if absent and set(value) == {"extension"}:  # a required element the source had no value for
        return f"not recorded ({absent[0]})"
    if "value" in value and ("unit" in value or "code" in value or "system" in value):
        unit = value.get("unit") or UCUM_DISPLAY.get(value.get("code"), value.get("code")) or ""
        return f"{value.get('comparator', '')}{_num(value['value'])} {unit}".strip()
    if "coding" in value or "text" in value and len(value) <= 2:
        return concept(value)
    if isinstance(value.get("reference"), str):  # not CarePlan.activity.reference, a Reference holding one
        return value.get("display") or value["reference"]
    if set(value) <= {"start", "end"}:
        return f"{when(value.get('start'))} – {when(value.get('end'))}"
    if "system" in value and "code" in value:
        return value.get("display") or value["code"]
    return None


def concept(cc) -> str:
    if not isinstance(cc, dict):
        return ""
    display = cc.get("text") or next((c.get("display") for c in cc.get("coding", []) if c.get("display")), "")
    return display or ", ".join(c.get("code", "") for c in cc.get("coding", []))


def coding_codes(value: dict) -> str:
    codings = value.get("coding") or ([value] if "system" in value and "code" in value and "value" not in value else [])
    return ", ".join(f"{_system(c.get('system', ''))} {c.get('code', '')}" for c in codings)


def _system(uri: str) -> str:
    known = {"http://loinc.org": "LOINC", "http://snomed.info/sct": "SNOMED CT", "http://unitsofmeasure.org": "UCUM",
             "http://hl7.org/fhir/sid/icd-10": "ICD-10", "http://terminology.hl7.org/CodeSystem/mdr": "MedDRA",
             "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl": "NCIt"}
    return known.get(uri, uri.rsplit("/", 1)[-1])


def _label(key: str) -> str:
    for prefix in ("value", "effective", "onset", "abatement", "performed", "issued", "occurrence", "detail", "due"):
        if key.startswith(prefix) and key != prefix and key[len(prefix)].isupper():
            return prefix
    return key


def _is_time(key: str) -> bool:
    return key.endswith(("DateTime", "Instant")) or key in ("issued", "recordedDate", "authoredOn", "date")


def _num(n) -> str:
    # Shown as stored: 37.0 stays 37.0, the recorded precision is clinical information.
    return "" if n is None else str(n)
