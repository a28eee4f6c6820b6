"""Checks for ids that go into a URL path, so that no value can leave its path segment.

An id may come from a person (the trigger API), from a site or from the
central server; whichever, it is checked here before it is formatted into a
path: ``ehr/../../../../management/env`` would otherwise reach another
endpoint with the site's credentials. Each check returns the id unchanged or
raises ``InvalidIdentifier`` (an ``InvalidRequest``: retrying cannot help).
The error names what was wrong, never the value, which may be a patient's.
"""
from __future__ import annotations

import re
import uuid
from urllib.parse import quote

from .errors import InvalidRequest

# openEHR OBJECT_VERSION_ID: <uuid>::<creating system id>::<version tree id>
_SYSTEM_ID = r"[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?"
_VERSION_UID = re.compile(rf"([0-9a-fA-F\-]{{36}})::{_SYSTEM_ID}::[0-9]+(?:\.[0-9]+\.[0-9]+)?")
# FHIR R4 id and version id (http://hl7.org/fhir/R4/datatypes.html#id); resource types are names.
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_FHIR_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")


class InvalidIdentifier(InvalidRequest):
    """An id meant for a URL path is malformed; nothing was sent."""

    def __init__(self, what: str):
        super().__init__(method="-", path="-", reason=f"refused before sending: {what} is malformed")


def _is_uuid(value: str) -> bool:
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def ehr_id(value: str) -> str:
    """An EHR id: a UUID in its canonical 36-character form."""
    if not _is_uuid(value):
        raise InvalidIdentifier("ehr_id")
    return value


def object_uid(value: str) -> str:
    """A composition's versioned object uid (a UUID) or one version of it (``uuid::system::n``)."""
    if _is_uuid(value):
        return value
    match = _VERSION_UID.fullmatch(value) if isinstance(value, str) else None
    if match is None or not _is_uuid(match.group(1)):
        raise InvalidIdentifier("composition uid")
    return value


def fhir_type(value: str) -> str:
    if not isinstance(value, str) or not _FHIR_TYPE.fullmatch(value):
        raise InvalidIdentifier("FHIR resource type")
    return value


def fhir_id(value: str) -> str:
    """A FHIR logical or version id ([A-Za-z0-9-.]{1,64}); '.' and '..' alone are path steps, not ids."""
    if not isinstance(value, str) or not _FHIR_ID.fullmatch(value) or value in (".", ".."):
        raise InvalidIdentifier("FHIR id")
    return value


def segment(value: str, what: str) -> str:
    """Any other text as one path segment: percent-encoded whole ('/' included), never '.' or '..'."""
    if not isinstance(value, str) or value.strip() in ("", ".", "..") or "/" in value or "\\" in value:
        raise InvalidIdentifier(what)
    return quote(value, safe="")
