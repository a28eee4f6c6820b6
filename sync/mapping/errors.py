"""Typed mapping errors.

Messages name only identifiers (composition uid, RM/FHIR path, mapping rule),
never clinical values, so they are safe to log and to show in the desk.
"""
from __future__ import annotations


class MappingError(Exception):
    """Base class: something in the transform layer could not be done."""

    def __init__(self, message: str, *, composition_uid: str | None = None,
                 path: str | None = None, rule: str | None = None):
        self.composition_uid = composition_uid
        self.path = path
        self.rule = rule
        self.detail = message
        where = ", ".join(f"{k}={v}" for k, v in (
            ("composition", composition_uid), ("path", path), ("rule", rule)) if v)
        super().__init__(f"{message} [{where}]" if where else message)


class UnknownArchetype(MappingError):
    """No model mapping is registered for an archetype (or resource) we were asked to map."""


class UnmappedTemplate(MappingError):
    """The template cannot be produced: nothing in it (or in the resources) is mapped."""


class MalformedInput(MappingError):
    """The input is not a well-formed canonical composition / FHIR resource."""
