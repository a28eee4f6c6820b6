"""Errors, fidelity rules, provenance and the report function."""
import copy

from pathlib import Path

import pytest

from sync.mapping import (MalformedInput, MappingError, UnknownArchetype, UnmappedTemplate, clinical_content,
                          compare_clinical, from_fhir, to_fhir, to_openehr)
from sync.mapping import datatypes as dt
from sync.mapping import templates
from sync.mapping.lookup import spec_for_archetype
from sync.mapping.report import report

from .conftest import corpus_files, load

DEPLOYED = Path(__file__).resolve().parents[2] / "deploy" / "templates"


def test_errors_name_ids_and_paths_not_values():
    err = MappingError("boom", composition_uid="u1", path="/content[x]", rule="r")
    assert "u1" in str(err) and "/content[x]" in str(err) and "rule=r" in str(err)
    with pytest.raises(MalformedInput):
        to_fhir({"_type": "COMPOSITION", "content": []}, site="s", ehr_id="e", patient_ref="Patient/1")
    with pytest.raises(MalformedInput):
        to_fhir({"resourceType": "Observation"}, site="s", ehr_id="e", patient_ref="Patient/1")
    with pytest.raises(UnknownArchetype):
        spec_for_archetype("openEHR-EHR-OBSERVATION.nope.v1")
    with pytest.raises(UnmappedTemplate):
        to_openehr([{"resourceType": "Flag", "id": "c"}], template_id="t")  # a type no file maps


def test_unmapped_template_when_the_template_lacks_the_archetype(corpus):
    templates.register(corpus / "openehr" / "templates" / "kds_procedure.opt")
    obs = load(next(iter(corpus_files("fhir/observation_vitals_body_weight.json"))))
    with pytest.raises(UnmappedTemplate) as exc:
        to_openehr([obs], template_id="KDS_Prozedur")
    assert "body_weight" in str(exc.value) and "kg" not in str(exc.value)


def test_new_composition_uses_the_registered_template(corpus):
    info = templates.register(corpus / "openehr" / "templates" / "encounter_body_temperature_multi.opt")
    obs = load(next(iter(corpus_files("fhir/observation_vitals_body_temperature.json"))))
    comp = to_openehr([obs], template_id=info.template_id)
    assert comp["archetype_details"]["template_id"]["value"] == info.template_id
    assert comp["archetype_node_id"] == info.root_archetype == "openEHR-EHR-COMPOSITION.encounter.v1"


def test_every_templates_root_is_its_composition_archetype_not_the_first_nested_one(corpus):
    """OPT 1.4 writes a root's archetype_id after its attributes: the first one in the text is a nested CLUSTER's
    or OBSERVATION's (a text search once labelled new compositions 'CLUSTER.case_identification')."""
    opts = sorted((corpus / "openehr" / "templates").glob("*.opt")) + sorted(DEPLOYED.glob("*.opt"))
    assert len(opts) >= 15
    for opt in opts:
        info = templates.parse_opt(opt.read_text(encoding="utf-8-sig"))
        assert "-COMPOSITION." in info.root_archetype, opt.name
        assert info.root_archetype in info.archetypes and len(info.archetypes) > 1, opt.name
    with pytest.raises(ValueError):
        templates.parse_opt("<template><concept>x</concept></template>")  # no template_id
    with pytest.raises(ValueError):
        templates.parse_opt("not xml at all")


def test_fidelity_ignores_only_non_clinical_fields():
    a = {"uid": {"value": "1"}, "content": [{"archetype_node_id": "at1", "value": {"_type": "DV_DATE_TIME",
                                                                                   "value": "2020-01-01T10:00:00,5Z"}},
                                            {"archetype_node_id": "at0", "name": {"value": "x"}}]}
    b = {"uid": {"value": "2"}, "content": [{"archetype_node_id": "at0", "name": {"value": "x"}},
                                            {"archetype_node_id": "at1", "value": {"_type": "DV_DATE_TIME",
                                                                                   "value": "2020-01-01T10:00:00.5Z"}}]}
    assert compare_clinical(a, b) == []
    c = copy.deepcopy(b)
    c["content"][1]["value"]["value"] = "2020-01-01T10:00:00.5+01:00"
    assert compare_clinical(a, c)
    q1 = {"_type": "DV_QUANTITY", "magnitude": 5, "units": "kg"}
    assert compare_clinical({"v": q1}, {"v": {**q1, "magnitude": 5.0}}) == []
    assert compare_clinical({"v": q1}, {"v": {**q1, "units": "g"}})
    nf = {"null_flavour": dt.coded_text("unknown", "openehr", "253")}
    assert compare_clinical(nf, {"null_flavour": dt.coded_text("masked", "openehr", "272")})
    # same-node-id order is clinical
    ev = [{"archetype_node_id": "at3", "time": "1"}, {"archetype_node_id": "at3", "time": "2"}]
    assert compare_clinical({"events": ev}, {"events": ev[::-1]})


def test_fidelity_on_fhir_ignores_ids_and_server_meta():
    r = {"resourceType": "Observation", "id": "a", "meta": {"versionId": "3", "lastUpdated": "x"}, "status": "final"}
    assert clinical_content(r) == {"resourceType": "Observation", "status": "final"}
    assert compare_clinical(r, {**r, "status": "amended"})


def test_report_summarises(corpus):
    lines, summary = report([corpus / "openehr" / "compositions" / "lab_blood_gas.composition.json",
                             corpus / "fhir" / "observation_vitals_heart_rate.json",
                             corpus / "fhir" / "provenance_example.json",
                             corpus / "openehr" / "compositions" / "ips.flat.json"])
    assert len(lines) == 4
    assert lines[0].startswith("lab_blood_gas.composition.json: ") and ", valid;" in lines[0]
    assert lines[2].startswith("provenance_example.json: nothing mapped")
    assert lines[3].startswith("ips.flat.json: skipped (no OPT")
    assert summary.startswith("4 files, 2 converted, ") and summary.endswith(", 1 nothing mapped, 1 skipped, 0 failed")


def test_fhir_born_detail_without_an_openehr_element_is_kept_not_lost():
    """A FHIR-born performer has no element in pulse.v2: kept in the entry's feeder audit (issue 21), so
    it is no loss, and it comes back (tests/mapping/test_fhir_born.py has the rest)."""
    obs = {"resourceType": "Observation", "id": "x", "status": "final", "performer": [{"reference": "Practitioner/1"}],
           "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
           "subject": {"reference": "Patient/1"}, "effectiveDateTime": "2024-01-01T10:00:00Z",
           "valueQuantity": {"value": 70, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}
    out = from_fhir([obs], template_id="t")
    assert out.losses == []
    comp = {**out.composition, "uid": {"_type": "OBJECT_VERSION_ID", "value": "u::s::1"}}
    back = to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources
    assert next(r for r in back if r["resourceType"] == "Observation")["performer"] == [{"reference": "Practitioner/1"}]


def test_a_composition_labelled_with_a_nested_archetype_gets_the_templates_root_in_its_next_version(corpus):
    """Written before the root was read from the OPT's definition (labelled OBSERVATION.body_temperature.v2)."""
    info = templates.register(corpus / "openehr" / "templates" / "encounter_body_temperature_multi.opt")
    obs = load(next(iter(corpus_files("fhir/observation_vitals_body_temperature.json"))))
    old = to_openehr([obs], template_id=info.template_id)
    wrong = "openEHR-EHR-OBSERVATION.body_temperature.v2"
    old["archetype_node_id"] = wrong
    old["archetype_details"]["archetype_id"]["value"] = wrong
    again = to_openehr([obs], template_id=info.template_id, base_composition=old)
    assert again["archetype_node_id"] == again["archetype_details"]["archetype_id"]["value"] == info.root_archetype
    kept = to_openehr([obs], template_id="not-registered", base_composition=old)
    assert kept["archetype_node_id"] == wrong  # no template to say otherwise: left as it is
