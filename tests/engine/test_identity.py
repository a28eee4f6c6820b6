"""sync.identity.source_identifier_value: the engine's source-identifier lookup takes both R4 shapes
(most resources: identifier 0..*, a list; Composition and Bundle: identifier 0..1, one object)."""
import json
from pathlib import Path

from sync.identity import SOURCE_SYSTEM, source_identifier_value
from sync.mapping import to_fhir

ONCOLOGY = Path(__file__).resolve().parents[1] / "fixtures" / "oncology" / "oncology_encounter.composition.json"
KEY = "site1|8f7c6b5a-0000-4000-8000-000000000001|/"


def test_it_reads_a_list_of_identifiers():
    r = {"resourceType": "Observation", "identifier": [{"system": "urn:x", "value": "1"},
                                                       {"system": SOURCE_SYSTEM, "value": KEY}]}
    assert source_identifier_value(r) == KEY


def test_it_reads_a_single_identifier_object():
    doc = {"resourceType": "Composition", "identifier": {"system": SOURCE_SYSTEM, "value": KEY}}
    assert source_identifier_value(doc) == KEY
    assert source_identifier_value({"resourceType": "Bundle", "identifier": {"system": "urn:x", "value": "1"}}) is None


def test_it_finds_nothing_without_a_source_identifier():
    assert source_identifier_value({"resourceType": "Patient"}) is None
    assert source_identifier_value({"resourceType": "Patient", "identifier": []}) is None
    assert source_identifier_value({"resourceType": "Patient", "identifier": ["junk", None]}) is None


def test_it_reads_every_resource_the_mapping_makes_including_the_fhir_composition():
    comp = json.loads(ONCOLOGY.read_text(encoding="utf-8"))
    resources = to_fhir(comp, site="site1", ehr_id="e1", patient_ref="Patient/p1").resources
    doc = next(r for r in resources if r["resourceType"] == "Composition")
    assert isinstance(doc["identifier"], dict)  # 0..1 in R4
    keys = [source_identifier_value(r) for r in resources]
    assert all(keys) and len(set(keys)) == len(keys)
    assert source_identifier_value(doc).endswith("|/")
