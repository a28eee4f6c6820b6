"""Deliberately invalid compositions, so the demo desk has dead letters to show.

Two families, observed against EHRbase 2.16 and the mapping layer as of this writing
(``tests/demo/test_seed_real.py`` re-checks both against the real servers):

Dead letters (the site ACCEPTS them, the engine refuses them):

* ``unit_not_a_code``: a haemoglobin result whose unit is ``"g /  dL"``. The analyte unit is
  unconstrained in the template, so EHRbase stores it; it is no UCUM code and no
  ``units_system`` names another system, which the RM check of the engine's validate-source
  step refuses (rule ``rm.dv_quantity.units.ucum``) -> ``ValidationFailed``, dead letter cause
  ``validation``.
* ``no_entries``: a composition with its context but no content at all (no entry is mandatory
  in the template). ``to_fhir`` refuses a composition without ``content`` (``MalformedInput``)
  -> dead letter cause ``mapping``.
* ``comment_too_long``: a procedure whose comment is longer than the engine takes in one string
  (``sync.workflow.payload.MAX_STRING``, 256 KiB; a pasted report, say). DV_TEXT has no bound,
  so EHRbase stores it; the engine's payload check refuses it (rule ``payload.string_length``)
  -> dead letter cause ``validation``.

Site rejections (EHRbase answers 422, nothing reaches the engine; for showing the site's own
validation, never committed by the demo):

* ``missing_test_name``: a laboratory result without its mandatory test name (1..1).
* ``bp_without_values``: a blood-pressure event with a time and no systolic or diastolic
  ("Observation contains no results").
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import catalogue as cat
from .flat import FlatComposition
from .generator import add_lab, add_procedure

FACILITY = "Synthetic Oncology Centre"
COMPOSER = "Synthetic interface engine"


@dataclass(frozen=True)
class InvalidCase:
    kind: str
    flat: dict[str, Any]
    site_accepts: bool
    why: str


def _header(when: datetime) -> FlatComposition:
    return FlatComposition(when, facility=FACILITY, composer=COMPOSER)


def unit_not_a_code(rng: random.Random, when: datetime) -> dict[str, Any]:
    flat = _header(when)
    add_lab(flat, when, cat.HAEMOGLOBIN, round(rng.uniform(10, 15), 1), unit="g /  dL")
    return flat.build()


def no_entries(rng: random.Random, when: datetime) -> dict[str, Any]:
    return _header(when).build()


def comment_too_long(rng: random.Random, when: datetime) -> dict[str, Any]:
    flat = _header(when)
    cancer = cat.CANCERS[rng.choice(sorted(cat.CANCERS))]
    report = "Pasted theatre report, unabridged. " * (9 * 1024)  # ~310 KiB, past the 256 KiB a string may be
    add_procedure(flat, when, cancer.biopsy, cancer.sites[0], "526", indication="Staging", outcome=report)
    return flat.build()


def missing_test_name(rng: random.Random, when: datetime) -> dict[str, Any]:
    flat = _header(when)
    add_lab(flat, when, cat.HAEMOGLOBIN, round(rng.uniform(10, 15), 1))
    return {k: v for k, v in flat.build().items() if "/test_name" not in k}


def bp_without_values(rng: random.Random, when: datetime) -> dict[str, Any]:
    flat = _header(when)
    path = flat.entry("blood_pressure")
    flat.set(f"{path}/any_event:0/time", when.isoformat(timespec="seconds"))
    return flat.build()


CASES = {
    "unit_not_a_code": (unit_not_a_code, True, "unit 'g /  dL' is no UCUM code: the RM check fails (dead letter)"),
    "no_entries": (no_entries, True, "no content: to_fhir raises MalformedInput (dead letter)"),
    "comment_too_long": (comment_too_long, True, "a 310 KiB comment: the payload check refuses it (dead letter)"),
    "missing_test_name": (missing_test_name, False, "mandatory test name missing: EHRbase 422"),
    "bp_without_values": (bp_without_values, False, "blood pressure event without values: EHRbase 422"),
}
DEAD_LETTER_KINDS = tuple(k for k, (_, accepted, _) in CASES.items() if accepted)


def invalid_case(kind: str, rng: random.Random, when: datetime) -> InvalidCase:
    make, accepted, why = CASES[kind]
    return InvalidCase(kind, make(rng, when), accepted, why)
