"""Structural validation of FHIR R4 resources with the fhir.resources R4B models.

R4B is wire-compatible with R4 for every resource we emit; the model class is
looked up from resourceType so new rows need no change here.  Our own residue
extensions of the plain string shape are checked by a fast exact rule instead of
building five models each (see ``residue_ok``): they were most of the cost.  This is not
profile validation (no mCODE invariants): that belongs to HAPI. One profile rule
is checked here because the mapping itself can break it: a vital sign's quantity
must carry a UCUM code (``vital_sign_unit_issues``), and a hand-written openEHR
unit that is not UCUM leaves it without one.
"""
from __future__ import annotations

import re

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from .terminology import SD_BASE, UCUM

_RESIDUE = SD_BASE + "openehr-residue"
_RESIDUE_PARTS = {"path", "attribute", "name", "rm", "basis"}
_PLAIN = re.compile(r"[ \r\n\t!-~]")  # a FHIR string containing one of these matches [ \r\n\t\S]+


def residue_ok(ext) -> bool:
    """Fast path: ``ext`` is an openehr-residue extension of the exact shape residue.encode() writes
    (url = ours; sub-extensions {url, valueString}, each string holding a space or printable ASCII
    character, or one typed ``value`` part, which the model checks alone).  The R4B Extension model
    accepts every such value (uri is \\S*, a string needs one [ \\r\\n\\t\\S] character, one value[x]),
    so the outer five models need not be built; any other shape is left to the model.  tests/mapping check this
    equivalence against the model on generated extensions."""
    if not isinstance(ext, dict) or ext.keys() != {"url", "extension"} or ext["url"] != _RESIDUE:
        return False
    subs = ext["extension"]
    return isinstance(subs, list) and bool(subs) and all(_part_ok(x) for x in subs)


def _part_ok(x) -> bool:
    if not isinstance(x, dict):
        return False
    if x.keys() == {"url", "valueString"} and x["url"] in _RESIDUE_PARTS:
        return isinstance(x["valueString"], str) and _PLAIN.search(x["valueString"]) is not None
    if x.get("url") == "value" and len(x) == 2:  # a typed value: the model checks just this part
        try:
            _extension().model_validate(x)
        except (ValidationError, ValueError, TypeError):
            return False
        return True
    return False


def _extension():
    return get_fhir_model_class("Extension")


def validate_fhir(resource: dict) -> list[str]:
    """Problems found ('' list means valid).  Messages name element paths, never values."""
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    if not rtype:
        return ["resourceType missing"]
    try:
        cls = get_fhir_model_class(rtype)
    except (KeyError, ValueError, TypeError):
        return ["resourceType: unknown"]  # not the value: a malformed body may carry anything there
    exts = resource.get("extension")
    if isinstance(exts, list) and exts:
        keep = [e for e in exts if not residue_ok(e)]
        if len(keep) != len(exts):  # the model validates everything else, residue parts it needs
            resource = {k: v for k, v in resource.items() if k != "extension"}
            if keep:
                resource["extension"] = keep
    try:
        cls.model_validate(resource)
    except ValidationError as exc:
        return [f"{'.'.join(str(p) for p in e['loc'])}: {e['type']}" for e in exc.errors()]
    except (ValueError, TypeError) as exc:
        return [f"{exc.__class__.__name__}"]
    return vital_sign_unit_issues(resource)


_VITALSIGNS = "http://hl7.org/fhir/StructureDefinition/vitalsigns"


def vital_sign_unit_issues(resource: dict) -> list[str]:
    """The vital-signs profile's unit rule: every valueQuantity (the value's and each component's)
    has system UCUM and a code. Only for Observations that claim the profile."""
    if resource.get("resourceType") != "Observation" or _VITALSIGNS not in ((resource.get("meta") or {}).get("profile") or []):
        return []
    places = [("valueQuantity", resource.get("valueQuantity"))]
    places += [(f"component[{i}].valueQuantity", c.get("valueQuantity"))
               for i, c in enumerate(resource.get("component") or []) if isinstance(c, dict)]
    return [f"{where}.code: the vital-signs profile requires a UCUM code (unit is not UCUM)"
            for where, q in places if isinstance(q, dict) and (q.get("system") != UCUM or not q.get("code"))]
