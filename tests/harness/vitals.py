"""The vital-signs composition the real-server engine tests commit and vary.

The corpus FLAT composition (template vital_signs_ehrn) with its foreign uids
removed, so EHRbase accepts it, and the systolic value set per test.
"""
import json

from tests.fixtures import OPENEHR_CORPUS, REPO_DIR

REPO = REPO_DIR
CORPUS = OPENEHR_CORPUS
TEMPLATE = "vital_signs_ehrn"
SYSTOLIC_FLAT = "ehrn_vital_signs.v2/vital_signs:0/blood_pressure:0/any_event:0/systolic|magnitude"
SYSTOLIC_LOINC = "8480-6"
TEMPERATURE_FLAT = "ehrn_vital_signs.v2/vital_signs:0/body_temperature:0/any_event:0/temperature"
TEMPERATURE_LOINC = "8310-5"


def vitals(systolic: float) -> dict:
    flat = json.loads((CORPUS / "compositions" / f"{TEMPLATE}.flat.json").read_text())
    flat = {k: v for k, v in flat.items() if not k.endswith("/_uid")}
    assert SYSTOLIC_FLAT in flat, "corpus file changed: pick another field to vary"
    flat[SYSTOLIC_FLAT] = systolic
    return flat


def vitals_with_temperature(systolic: float, temperature: float | None) -> dict:
    """The same with a body temperature entry (two entries: one can be dropped by a later version)."""
    flat = vitals(systolic)
    if temperature is not None:
        prefix = TEMPERATURE_FLAT.rsplit("/", 2)[0]
        flat.update({
            f"{TEMPERATURE_FLAT}|magnitude": temperature, f"{TEMPERATURE_FLAT}|unit": "Cel",
            f"{prefix}/any_event:0/time": "2021-03-21T21:19:49.293785+01:00",
            f"{prefix}/language|terminology": "ISO_639-1", f"{prefix}/language|code": "de",
            f"{prefix}/encoding|terminology": "IANA_character-sets", f"{prefix}/encoding|code": "UTF-8",
        })
    return flat


def template_opt() -> bytes:
    return (CORPUS / "templates" / f"{TEMPLATE}.opt").read_bytes()
