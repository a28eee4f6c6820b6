"""What the FHIR R4B model says about an element path (list or single, which type).

Used by fhirpath.py to know when to create a list, and by the tests to check
that every FHIR path in a mapping file is a real R4 element.  Reads the
fhir.resources R4B pydantic models, so there is no hand-kept element table.
"""
from __future__ import annotations

import functools
import re
import typing

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource


class UnknownElement(ValueError):
    pass


def _type_name(annotation) -> tuple[bool, str]:
    text = str(annotation)
    is_list = "List[" in text
    m = re.search(r"abc\.(\w+?)Type\b", text)
    if m:
        return is_list, m.group(1)
    for prim in ("datetime.datetime", "datetime.date", "datetime.time", "bool", "int", "float", "Decimal", "str"):
        if prim in text:
            return is_list, {"datetime.datetime": "dateTime", "datetime.date": "date", "datetime.time": "time",
                             "bool": "boolean", "int": "integer", "float": "decimal", "Decimal": "decimal",
                             "str": "string"}[prim]
    return is_list, "string"


@functools.lru_cache(maxsize=None)
def fields(model: str) -> dict[str, tuple[bool, str]]:
    try:
        cls = get_fhir_model_class(model)
    except KeyError as exc:
        raise UnknownElement(model) from exc
    # python keywords are renamed in the models (class -> class_fhir): use the FHIR name (alias)
    return {(f.alias if name.endswith("_fhir") and f.alias else name): _type_name(f.annotation)
            for name, f in cls.model_fields.items() if not name.endswith("__ext")}


def field(model: str, name: str) -> tuple[bool, str]:
    """(is_list, type) of ``model.name``; raises UnknownElement."""
    f = fields(model)
    if name not in f:
        raise UnknownElement(f"{model}.{name}")
    return f[name]


def choices(model: str, base: str) -> dict[str, str]:
    """Choice-type suffixes of ``base[x]``: {'Quantity': 'Quantity', 'DateTime': 'dateTime', ...}."""
    out = {}
    for name, (_, tname) in fields(model).items():
        if name.startswith(base) and len(name) > len(base) and name[len(base)].isupper():
            out[name[len(base):]] = tname
    return out


@functools.lru_cache(maxsize=None)
def is_resource(model: str) -> bool:
    """True for a resource type (MedicationStatement), False for a data type or backbone element
    (Dosage, MedicationAdministrationDosage): a cluster file targeting one maps inline (engine)."""
    try:
        return issubclass(get_fhir_model_class(model), Resource)
    except KeyError as exc:
        raise UnknownElement(model) from exc


def child_model(model: str, name: str) -> str:
    _, tname = field(model, name)
    return tname


@functools.lru_cache(maxsize=None)
def allowed_codes(model: str, name: str) -> frozenset[str] | None:
    """The codes a required-binding ``code`` element of a resource takes (Procedure.status...), None when
    the model lists none or only some (a '+' in its list): a value outside them is one HAPI will not parse."""
    try:
        info = get_fhir_model_class(model).model_fields.get(name)
    except KeyError:
        return None
    codes = ((info.json_schema_extra or {}) if info is not None else {}).get("enum_values")
    return frozenset(codes) if codes and "+" not in codes else None


def is_primitive(tname: str) -> bool:
    return tname[:1].islower()


@functools.lru_cache(maxsize=4096)  # pure in (type, path); raising calls are not cached
def check_path(resource_type: str, path: str) -> str:
    """Walk a dotted path (with optional .as(Type)) and return the final type; raise if invalid."""
    model = resource_type
    parts = [p for p in re.split(r"\.(?![^(]*\))", path) if p]
    i = 0
    while i < len(parts):
        p = parts[i]
        nxt = parts[i + 1] if i + 1 < len(parts) else None
        if nxt and nxt.startswith("as("):
            choice = nxt[3:-1]
            name = p + choice[0].upper() + choice[1:]
            i += 1
        else:
            name = p
        if name not in fields(model) and choices(model, name):
            model = "Element"  # bare choice base: any of its types
        else:
            model = child_model(model, name)
        i += 1
    return model


__all__ = ["field", "fields", "choices", "allowed_codes", "check_path", "UnknownElement", "is_primitive", "is_resource", "typing"]
