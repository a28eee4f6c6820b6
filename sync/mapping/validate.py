"""Structural validation of FHIR R4 resources with the fhir.resources R4B models.

R4B is wire-compatible with R4 for every resource we emit; the model class is
looked up from resourceType so new rows need no change here.  This is not
profile validation (no vitalsigns/mCODE invariants): that belongs to HAPI.
"""
from __future__ import annotations

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError


def validate_fhir(resource: dict) -> list[str]:
    """Problems found ('' list means valid).  Messages name element paths, never values."""
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    if not rtype:
        return ["resourceType missing"]
    try:
        cls = get_fhir_model_class(rtype)
    except (KeyError, ValueError, TypeError):
        return ["resourceType: unknown"]  # not the value: a malformed body may carry anything there
    try:
        cls.model_validate(resource)
    except ValidationError as exc:
        return [f"{'.'.join(str(p) for p in e['loc'])}: {e['type']}" for e in exc.errors()]
    except (ValueError, TypeError) as exc:
        return [f"{exc.__class__.__name__}"]
    return []
