"""openEHR DV_* <-> FHIR R4 data types, both ways.

Each converter is a pair (``x_to_fhir`` / ``x_to_dv``) kept next to each
other so a reader can check that they invert each other; the round-trip tests
in tests/mapping/test_datatypes.py hold them to it.  Values that a FHIR type
cannot carry (e.g. DV_QUANTITY.precision) are not dropped here: the engine
compares the reverse result with the source and carries any residue in the
``openehr-element`` extension (see residue.py).
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from urllib.parse import quote, unquote

from . import terminology as term
from .ucum import is_ucum

DAR_SYSTEM = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
DAR_EXT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
ORDINAL_EXT = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
MATCH_EXT = term.SD_BASE + "openehr-term-mapping-match"

# archetype units that are not UCUM codes -> UCUM code
_UCUM_FIX = {"°C": "Cel", "℃": "Cel", "°F": "[degF]", "mmHg": "mm[Hg]", "lb": "[lb_av]", "in": "[in_i]",
             "bpm": "/min", "breaths/min": "/min", "beats/min": "/min", "mmol/l": "mmol/L"}
# UCUM code -> how a person writes it (Quantity.unit)
_HUMAN = {"Cel": "°C", "[degF]": "°F", "mm[Hg]": "mmHg", "[lb_av]": "lb", "[in_i]": "in",
          "/min": "/min", "%": "%", "kg": "kg", "cm": "cm", "g": "g", "m": "m", "kg/m2": "kg/m2"}


# ---------------------------------------------------------------- helpers
def code_phrase(terminology_id: str, code: str) -> dict:
    return {"_type": "CODE_PHRASE", "terminology_id": {"_type": "TERMINOLOGY_ID", "value": terminology_id},
            "code_string": code}


def coded_text(value: str, terminology_id: str, code: str) -> dict:
    return {"_type": "DV_CODED_TEXT", "value": value, "defining_code": code_phrase(terminology_id, code)}


def phrase_parts(cp: dict) -> tuple[str, str]:
    return (cp.get("terminology_id") or {}).get("value", "local"), cp.get("code_string", "")


def dv_type(dv: dict) -> str:
    """The RM type of a data value; canonical JSON sometimes omits _type."""
    if dv.get("_type"):
        return dv["_type"]
    if "defining_code" in dv:
        return "DV_CODED_TEXT"
    if "magnitude" in dv and "units" in dv:
        return "DV_QUANTITY"
    if "magnitude" in dv:
        return "DV_COUNT"
    if "numerator" in dv:
        return "DV_PROPORTION"
    if "symbol" in dv:
        return "DV_ORDINAL"
    if "id" in dv and ("issuer" in dv or "type" in dv or "assigner" in dv):
        return "DV_IDENTIFIER"
    return "DV_TEXT"


# ---------------------------------------------------------------- quantity
def ucum_code(units: str) -> str:
    return _UCUM_FIX.get(units, units)


def human_unit(code: str) -> str:
    return _HUMAN.get(code, code)


def in_ucum_system(dv: dict) -> bool:
    """The RM default: a DV_QUANTITY's units are UCUM unless units_system names another system."""
    return dv.get("units_system") in (None, "", term.UCUM, "UCUM")


def quantity_to_fhir(dv: dict) -> dict:
    """DV_QUANTITY -> Quantity. A unit that is not a UCUM code goes as ``unit`` text alone:
    claiming the UCUM system for it would be false (and HAPI refuses it); it round-trips as written."""
    units = dv.get("units", "")
    code = ucum_code(units)
    q = {"value": dv["magnitude"], "unit": dv.get("units_display_name") or human_unit(code)}
    if in_ucum_system(dv):
        if is_ucum(code):
            q.update(system=term.UCUM, code=code)
    else:
        q.update(system=dv["units_system"], code=units)
    return q


def quantity_to_dv(q: dict) -> dict:
    code = q.get("code") or ucum_code(q.get("unit", ""))
    dv = {"_type": "DV_QUANTITY", "magnitude": q.get("value"), "units": code}
    if q.get("system") not in (None, term.UCUM):
        dv["units_system"] = q["system"]
    if q.get("unit") and q["unit"] not in (code, human_unit(code)):
        dv["units_display_name"] = q["unit"]  # RM 1.1 attribute: only when not derivable
    return dv


# ---------------------------------------------------------------- coded text
def coded_to_fhir(dv: dict) -> dict:
    """DV_CODED_TEXT -> CodeableConcept: text = the original value, coding[0] = defining_code,
    further codings = DV_CODED_TEXT.mappings (match kept in an extension)."""
    tid, code = phrase_parts(dv["defining_code"])
    cc: dict = {"coding": [_without_none({"system": term.system_for(tid), "code": code, "display": dv.get("value")})]}
    for m in dv.get("mappings") or []:
        mtid, mcode = phrase_parts(m.get("target") or {})
        coding = _without_none({"system": term.system_for(mtid), "code": mcode})
        coding["extension"] = [{"url": MATCH_EXT, "valueCode": m.get("match", "?")}]
        cc["coding"].append(coding)
    if dv.get("value") is not None:
        cc["text"] = dv["value"]
    return cc


def _without_none(coding: dict) -> dict:
    return {k: v for k, v in coding.items() if v is not None}


def text_to_fhir_cc(dv: dict) -> dict:
    return {"text": dv.get("value", "")}


def cc_to_dv(cc: dict) -> dict:
    """CodeableConcept -> DV_CODED_TEXT (or DV_TEXT when it has no coding)."""
    codings = [c for c in cc.get("coding") or [] if c.get("code")]
    if not codings:
        return {"_type": "DV_TEXT", "value": cc.get("text", "")}
    first = codings[0]
    value = cc.get("text") or first.get("display") or first.get("code")
    dv = coded_text(value, term.terminology_for(first.get("system")), first["code"])
    maps = []
    for c in codings[1:]:
        match = next((e.get("valueCode") for e in c.get("extension") or [] if e.get("url") == MATCH_EXT), "?")
        maps.append({"_type": "TERM_MAPPING", "match": match,
                     "target": code_phrase(term.terminology_for(c.get("system")), c["code"])})
    if maps:
        dv["mappings"] = maps
    return dv


# ---------------------------------------------------------------- ordinal / proportion / identifier
def ordinal_to_fhir(dv: dict) -> dict:
    cc = coded_to_fhir(dv["symbol"])
    cc["coding"][0]["extension"] = [{"url": ORDINAL_EXT, "valueDecimal": dv["value"]}]
    return cc


def cc_to_ordinal(cc: dict) -> dict:
    first = (cc.get("coding") or [{}])[0]
    ordv = next((e.get("valueDecimal") for e in first.get("extension") or [] if e.get("url") == ORDINAL_EXT), None)
    clean = {**cc, "coding": [{k: v for k, v in first.items() if k != "extension"}] + (cc.get("coding") or [])[1:]}
    return {"_type": "DV_ORDINAL", "value": int(ordv) if ordv is not None else 0, "symbol": cc_to_dv(clean)}


def proportion_to_fhir(dv: dict) -> tuple[str, dict]:
    if dv.get("type") == 2 and dv.get("denominator") == 100:
        return "Quantity", {"value": dv["numerator"], "unit": "%", "system": term.UCUM, "code": "%"}
    return "Ratio", {"numerator": {"value": dv["numerator"]}, "denominator": {"value": dv["denominator"]}}


def proportion_to_dv(fhir_type: str, v: dict) -> dict:
    if fhir_type == "Quantity":
        return {"_type": "DV_PROPORTION", "numerator": v.get("value"), "denominator": 100.0, "type": 2}
    return {"_type": "DV_PROPORTION", "numerator": (v.get("numerator") or {}).get("value"),
            "denominator": (v.get("denominator") or {}).get("value"), "type": 0}


ISSUER_PREFIX = term.BASE + "/NamingSystem/openehr-issuer/"
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")


def identifier_to_fhir(dv: dict) -> dict:
    """DV_IDENTIFIER -> Identifier: issuer -> system (an issuer that is not an absolute URI, e.g.
    'Hospital X', becomes ``{ISSUER_PREFIX}{url-quoted issuer}``: Identifier.system must be a URI)."""
    ident: dict = {"value": dv.get("id")}
    if dv.get("issuer"):
        issuer = dv["issuer"]
        ident["system"] = issuer if _URI.match(issuer) else ISSUER_PREFIX + quote(issuer, safe="")
    if dv.get("type"):
        ident["type"] = {"text": dv["type"]}
    if dv.get("assigner"):
        ident["assigner"] = {"display": dv["assigner"]}
    return ident


def identifier_to_dv(ident: dict) -> dict:
    dv: dict = {"_type": "DV_IDENTIFIER"}
    if ident.get("system"):
        sys_ = ident["system"]
        dv["issuer"] = unquote(sys_[len(ISSUER_PREFIX):]) if sys_.startswith(ISSUER_PREFIX) else sys_
    if (ident.get("assigner") or {}).get("display"):
        dv["assigner"] = ident["assigner"]["display"]
    dv["id"] = ident.get("value")
    if (ident.get("type") or {}).get("text"):
        dv["type"] = ident["type"]["text"]
    return dv


# ---------------------------------------------------------------- dates and times
_NAIVE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}([.,]\d+)?)?$")


def datetime_to_fhir(value: str) -> str:
    """ISO 8601 as openEHR writes it -> FHIR dateTime.  A decimal comma becomes a dot, missing
    seconds are added, and a time without zone gets 'Z' (FHIR requires a zone; the engine reports it
    as a loss and the residue keeps the original)."""
    v = value.replace(",", ".")
    m = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})(Z|[+-]\d{2}:?\d{2})?$", v)
    if m:
        v = m.group(1) + ":00" + (m.group(2) or "")
    if _NAIVE_TIME.match(v):
        v += "Z"
    v = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", v) if "T" in v else v
    return v


def is_naive_time(value: str) -> bool:
    return bool(_NAIVE_TIME.match(value.replace(",", ".")))


_DUR = re.compile(r"^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:[.,]\d+)?)S)?)?$")


def parse_duration(iso: str) -> timedelta | None:
    """ISO 8601 duration with weeks/days/hours/minutes/seconds (no years or months: not exact)."""
    m = _DUR.match(iso or "")
    if not m or iso in ("P", "PT"):
        return None
    w, d, h, mi, s = m.groups()
    return timedelta(weeks=int(w or 0), days=int(d or 0), hours=int(h or 0), minutes=int(mi or 0),
                     seconds=float((s or "0").replace(",", ".")))


def format_duration(td: timedelta) -> str:
    secs = td.total_seconds()
    days, rem = divmod(int(secs), 86400)
    hours, rem = divmod(rem, 3600)
    mins, s = divmod(rem, 60)
    frac = secs - int(secs)
    out = "P" + (f"{days}D" if days else "")
    t = (f"{hours}H" if hours else "") + (f"{mins}M" if mins else "")
    if s or frac:
        t += f"{s + frac:g}S"
    return out + ("T" + t if t else ("" if days else "T0S"))


def parse_dt(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def format_dt(dt: datetime) -> str:
    s = dt.isoformat()
    return s[:-6] + "Z" if s.endswith("+00:00") else s


# ---------------------------------------------------------------- single-unit durations (UCUM time units)
_ISO_UNITS = {"Y": "a", "M": "mo", "W": "wk", "D": "d", "TH": "h", "TM": "min", "TS": "s"}
_UNIT_ISO = {v: k for k, v in _ISO_UNITS.items()}
_ONE = re.compile(r"^P(?:(?P<date>\d+(?:\.\d+)?)(?P<du>[YMWD])|T(?P<time>\d+(?:\.\d+)?)(?P<tu>[HMS]))$")


def duration_to_fhir(iso: str) -> dict | None:
    """'P5Y' -> {value 5, unit 'a', system UCUM, code 'a'}; None for compound durations."""
    m = _ONE.match(iso or "")
    if not m:
        return None
    num, unit = (m["date"], m["du"]) if m["date"] else (m["time"], "T" + m["tu"])
    value = float(num) if "." in num else int(num)
    code = _ISO_UNITS[unit]
    return {"value": value, "unit": code, "system": term.UCUM, "code": code}


def duration_from_fhir(q: dict) -> str | None:
    unit = _UNIT_ISO.get(q.get("code") or q.get("unit") or "")
    value = q.get("value")
    if unit is None or value is None:
        return None
    num = f"{value:g}" if isinstance(value, float) else str(value)
    return f"PT{num}{unit[1]}" if unit.startswith("T") else f"P{num}{unit}"


def add_duration(start: str, iso: str) -> str | None:
    """start + a single-unit duration, as FHIR dateTime; None if either cannot be computed exactly."""
    m = _ONE.match(iso or "")
    s = parse_dt(start) if start and "T" in start else None
    if not m or s is None or (m["date"] and "." in m["date"]):
        return None
    if m["date"]:
        n, u = int(m["date"]), m["du"]
        if u in ("Y", "M"):
            months = s.month - 1 + n * (12 if u == "Y" else 1)
            try:
                end = s.replace(year=s.year + months // 12, month=months % 12 + 1)
            except ValueError:
                return None
        else:
            end = s + parse_duration(iso)
    else:
        end = s + parse_duration(iso)
    return format_dt(end)


# ---------------------------------------------------------------- null flavour
_NF_TO_DAR = {"271": "unknown", "253": "unknown", "272": "masked", "273": "not-applicable"}
_DAR_TO_NF = {"unknown": ("253", "unknown"), "masked": ("272", "masked"),
              "not-applicable": ("273", "not applicable")}


def null_flavour_to_dar(nf: dict) -> dict:
    _, code = phrase_parts(nf.get("defining_code") or {})
    dar = _NF_TO_DAR.get(code, "unknown")
    return {"coding": [{"system": DAR_SYSTEM, "code": dar}]}


def dar_to_null_flavour(cc: dict) -> dict:
    code = next((c.get("code") for c in cc.get("coding") or [] if c.get("system") == DAR_SYSTEM), None)
    nf_code, text = _DAR_TO_NF.get(code, ("271", "no information"))
    return coded_text(text, "openehr", nf_code)


# ---------------------------------------------------------------- value[x] dispatch
def dv_to_value(dv: dict) -> tuple[str, object]:
    """Pick the FHIR value[x] type for a data value and convert it.  Raises KeyError for DV types
    we have no standard FHIR form for (DV_MULTIMEDIA, DV_PARSABLE, DV_INTERVAL, ...)."""
    t = dv_type(dv)
    if t == "DV_QUANTITY":
        return "Quantity", quantity_to_fhir(dv)
    if t == "DV_CODED_TEXT":
        return "CodeableConcept", coded_to_fhir(dv)
    if t == "DV_TEXT":
        return "String", dv.get("value", "")
    if t == "DV_COUNT":
        return "Integer", dv.get("magnitude")
    if t == "DV_BOOLEAN":
        return "Boolean", dv.get("value")
    if t == "DV_DATE_TIME":
        return "DateTime", datetime_to_fhir(dv.get("value", ""))
    if t == "DV_DATE":
        return "Date", dv.get("value")
    if t == "DV_TIME":
        return "Time", dv.get("value")
    if t == "DV_PROPORTION":
        return proportion_to_fhir(dv)
    if t == "DV_ORDINAL":
        return "CodeableConcept", ordinal_to_fhir(dv)
    if t == "DV_IDENTIFIER":
        return "Identifier", identifier_to_fhir(dv)
    if t == "DV_DURATION":
        return "String", dv.get("value")
    raise KeyError(t)


def value_to_dv(fhir_type: str, v, hint: str | None = None) -> dict:
    """Inverse of dv_to_value; ``hint`` is the RM type the archetype expects (e.g. DV_PROPORTION
    for a percent Quantity, DV_ORDINAL for a CodeableConcept, DV_DURATION for a string)."""
    if hint == "DV_PROPORTION" and fhir_type in ("Quantity", "Ratio"):
        return proportion_to_dv(fhir_type, v)
    if fhir_type == "Quantity":
        return quantity_to_dv(v)
    if fhir_type == "CodeableConcept":
        first = (v.get("coding") or [{}])[0]
        if hint == "DV_ORDINAL" or any(e.get("url") == ORDINAL_EXT for e in first.get("extension") or []):
            return cc_to_ordinal(v)
        return cc_to_dv(v)
    if fhir_type == "String":
        return {"_type": hint if hint in ("DV_DURATION",) else "DV_TEXT", "value": v}
    if fhir_type == "Integer":
        return {"_type": "DV_COUNT", "magnitude": v}
    if fhir_type == "Boolean":
        return {"_type": "DV_BOOLEAN", "value": v}
    if fhir_type == "DateTime":
        return {"_type": "DV_DATE_TIME", "value": v}
    if fhir_type == "Date":
        return {"_type": "DV_DATE", "value": v}
    if fhir_type == "Time":
        return {"_type": "DV_TIME", "value": v}
    if fhir_type == "Ratio":
        return proportion_to_dv("Ratio", v)
    if fhir_type == "Identifier":
        return identifier_to_dv(v)
    raise KeyError(fhir_type)
