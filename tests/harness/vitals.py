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


def vitals(systolic: float) -> dict:
    flat = json.loads((CORPUS / "compositions" / f"{TEMPLATE}.flat.json").read_text())
    flat = {k: v for k, v in flat.items() if not k.endswith("/_uid")}
    assert SYSTOLIC_FLAT in flat, "corpus file changed: pick another field to vary"
    flat[SYSTOLIC_FLAT] = systolic
    return flat


def template_opt() -> bytes:
    return (CORPUS / "templates" / f"{TEMPLATE}.opt").read_bytes()
