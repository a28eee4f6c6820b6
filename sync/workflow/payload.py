"""Guards for what a server sent before the engine stores or maps it.

A body that PostgreSQL cannot hold (NUL, lone surrogates, NaN) or that is
absurd (nesting, size) fails the same way on every retry, so it dead-letters
at once with the JSON path of the first offending node; a pure transform that
crashes on an input is likewise a property of the input, not a transient
fault. Messages name paths and exception classes, never values.
"""
from __future__ import annotations

import math
import re
from contextlib import contextmanager
from datetime import date, datetime, time
from typing import Any

from sync.mapping import rmcheck
from sync.mapping.datatypes import in_ucum_system, ucum_code
from sync.mapping.errors import MalformedInput, MappingError
from sync.mapping.ucum import is_ucum

from .result import ValidationFailed

MAX_DEPTH = 200  # canonical compositions nest ~20 deep; the stdlib and our walkers recurse
# One string this long is not a clinical value we can map; attachment bodies (``data``) are exempt.
MAX_STRING = 256 * 1024


@contextmanager
def well_formed(what: str):
    """Turn a body the client could not parse (bad UTF-8, bad JSON, too deep) into a dead letter."""
    try:
        yield
    except (ValueError, RecursionError) as exc:
        raise ValidationFailed(f"{what} is not well-formed JSON ({type(exc).__name__})", rule="payload.json", path="/") from None


def check_storable(doc: Any) -> None:
    """Raise ValidationFailed naming the first node PostgreSQL JSON or our walkers cannot take."""
    if not isinstance(doc, dict):
        raise ValidationFailed("payload is not a JSON object", rule="payload.object", path="/")
    stack: list[tuple[str, Any, int]] = [("", doc, 0)]
    while stack:
        path, value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValidationFailed(f"payload nests deeper than {MAX_DEPTH}", rule="payload.depth", path=path[:500])
        if isinstance(value, dict):
            for key, child in value.items():
                _check_text(key, path + "/", "key")
                stack.append((f"{path}/{key}", child, depth + 1))
        elif isinstance(value, list):
            stack.extend((f"{path}/{i}", child, depth + 1) for i, child in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValidationFailed("number is NaN or infinite", rule="payload.number", path=path[:500] or "/")
        elif isinstance(value, str):
            _check_text(value, path or "/", "string")
            if len(value) > MAX_STRING and not path.endswith("/data"):
                raise ValidationFailed(f"string longer than {MAX_STRING} characters", rule="payload.string_length",
                                       path=path[:500])


def _check_text(text: str, path: str, what: str) -> None:
    if "\x00" in text:
        raise ValidationFailed(f"{what} holds a NUL character", rule="payload.text", path=path[:500])
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationFailed(f"{what} is not valid Unicode (lone surrogate)", rule="payload.text", path=path[:500]) from None


@contextmanager
def pure_transform(rule: str, path: str = "/"):
    """A pure mapping call that crashes on this input: malformed input, dead-lettered, never retried."""
    try:
        yield
    except MappingError:
        raise
    except (TypeError, KeyError, AttributeError, ValueError, IndexError, RecursionError) as exc:
        raise MalformedInput(f"the transform cannot read this input ({type(exc).__name__})", rule=rule, path=path) from None


_DATES = {"DV_DATE_TIME", "DV_DATE", "DV_TIME"}
_TEXTS = {"DV_TEXT", "DV_CODED_TEXT"}
MAX_UNITS = 100


def check_rm(composition: dict) -> None:
    """The RM invariants the mapping relies on but does not check: mandatory nodes, value types, dates.

    EHRbase enforces these at commit; a body that breaks them reached us some
    other way (a proxy, a bug, a hand-made import) and must not be synced.
    """
    stack: list[tuple[str, Any]] = [("", composition)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, list):
            stack.extend((f"{path}/{i}", child) for i, child in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        _check_node(node, path or "/")
        stack.extend((f"{path}/{k}", v) for k, v in node.items() if isinstance(v, (dict, list)))


def check_required(composition: dict) -> None:
    """Raise ValidationFailed naming the first node missing a time the RM requires (an event's or an action's
    time, a history's origin) in a composition the engine built from FHIR, where those times are optional and
    the mapping makes none up (``rmcheck``).  EHRbase would refuse it too, but only after the write was sent,
    as an opaque 400.  ``check_rm`` checks what a site sent us; this checks the times a composition built
    from FHIR may lack."""
    gaps = rmcheck.missing(composition)
    if gaps:
        more = f" (and {len(gaps) - 1} more)" if len(gaps) > 1 else ""
        raise ValidationFailed(f"composition lacks {gaps[0].name}, which the openEHR RM requires{more}",
                               rule=gaps[0].rule, path=gaps[0].path[:500])


def _check_node(node: dict, path: str) -> None:
    def fail(message: str, rule: str, where: str = path) -> None:
        raise ValidationFailed(message, rule=rule, path=where[:500])

    rm_type = node.get("_type")
    if "_type" in node and not isinstance(rm_type, str):
        fail("_type is not a string", "rm.type", f"{path}/_type")
    if "archetype_node_id" in node:
        if not isinstance(node["archetype_node_id"], str) or not node["archetype_node_id"]:
            fail("archetype_node_id is not a non-empty string", "rm.locatable", f"{path}/archetype_node_id")
        name = node.get("name")  # canonical JSON may omit _type (inferable), so that is not checked
        if name is not None and (not isinstance(name, dict) or not isinstance(name.get("value"), str)):
            fail("locatable name has no text value", "rm.locatable.name", f"{path}/name")
    if rm_type == "ELEMENT" and (("value" in node) == ("null_flavour" in node)):
        fail("ELEMENT must have exactly one of value and null_flavour", "rm.element", path)
    if rm_type in _TEXTS and not isinstance(node.get("value"), str):
        fail(f"{rm_type} value is not a string", "rm.dv_text", f"{path}/value")
    if rm_type == "DV_QUANTITY":
        magnitude, units = node.get("magnitude"), node.get("units")
        if isinstance(magnitude, bool) or not isinstance(magnitude, (int, float)):
            fail("DV_QUANTITY magnitude is not a number", "rm.dv_quantity.magnitude", f"{path}/magnitude")
        if not isinstance(units, str) or not units.strip() or len(units) > MAX_UNITS:
            fail("DV_QUANTITY units missing, blank or too long", "rm.dv_quantity.units", f"{path}/units")
        # RM: units are UCUM unless units_system names another system. A hand-written unit
        # ('..mol/l' with its micro sign lost) is a 1000-fold ambiguity: a person decides.
        if in_ucum_system(node) and not is_ucum(ucum_code(units)):
            fail("DV_QUANTITY units are not a UCUM code and no units_system names another system",
                 "rm.dv_quantity.units.ucum", f"{path}/units")
    if rm_type in _DATES and not _iso(rm_type, node.get("value")):
        fail(f"{rm_type} value is not an ISO 8601 {rm_type[3:].lower().replace('_', ' ')}", "rm.dv_date", f"{path}/value")


def _iso(rm_type: str, value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    text = value.replace(",", ".")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parse = {"DV_DATE_TIME": datetime.fromisoformat, "DV_DATE": date.fromisoformat, "DV_TIME": time.fromisoformat}[rm_type]
    try:
        parse(text)
        return True
    except ValueError:
        # partial dates (year, year-month) are valid openEHR dates and date-times
        return rm_type != "DV_TIME" and bool(_PARTIAL.match(text))


_PARTIAL = re.compile(r"^\d{4}(-(0[1-9]|1[0-2]))?$")
