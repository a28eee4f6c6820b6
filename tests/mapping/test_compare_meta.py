"""compare_clinical and meta: profiles are a declaration, not clinical content (README,
"what compare_clinical ignores"); tags and security labels still count."""
import copy
import json

from sync.mapping import clinical_content, compare_clinical, to_fhir

from .conftest import REPO_DIR

ONCOLOGY = REPO_DIR / "tests/fixtures/oncology/oncology_encounter.composition.json"


def _resources():
    comp = json.loads(ONCOLOGY.read_text(encoding="utf-8"))
    return to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources


def test_it_ignores_profiles_a_server_dropped():
    for r in _resources():
        if not (r.get("meta") or {}).get("profile"):
            continue
        central = copy.deepcopy(r)
        central["meta"]["profile"] = central["meta"]["profile"][1:]  # HAPI/an edit kept only some
        assert compare_clinical(r, central) == []
        central["meta"] = {"versionId": "3", "lastUpdated": "2026-01-01T00:00:00Z"}
        assert compare_clinical(r, central) == []
        assert clinical_content(r) == clinical_content(central)  # so the stored hash is the same too


def test_it_still_compares_security_labels_and_tags():
    r = next(r for r in _resources() if r["resourceType"] == "Condition")
    labelled = copy.deepcopy(r)
    labelled.setdefault("meta", {})["security"] = [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]
    assert compare_clinical(r, labelled)
    tagged = copy.deepcopy(r)
    tagged.setdefault("meta", {})["tag"] = [{"system": "urn:x", "code": "y"}]
    assert compare_clinical(r, tagged)


def test_it_still_sees_a_content_change_behind_a_profile():
    r = next(r for r in _resources() if r["resourceType"] == "Condition")
    edited = copy.deepcopy(r)
    edited["code"]["coding"][0]["code"] = "J45"
    edited["meta"].pop("profile")
    assert [d["path"] for d in compare_clinical(r, edited)] == ["root['code']['coding'][0]['code']"]
