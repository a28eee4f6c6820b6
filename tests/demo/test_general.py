"""The general-record demo data (issue 18): the template builds reproducibly, the seeded composition holds
every issue-18 row with plausible synthetic values and maps to valid FHIR; against a real EHRbase it commits
once (a re-run commits nothing) and its resources pass HAPI $validate."""
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from sync.clients.openehr import OpenEHRClient
from sync.demo import general
from sync.demo.generator import SUBJECT_NAMESPACE
from sync.mapping import compare_clinical, to_fhir, to_openehr, validate_fhir
from tests.mapping.hapi import hapi_errors
from tests.templates.conftest import REPO, load

VISIT = datetime(2025, 2, 3, 9, 0, tzinfo=timezone(timedelta(hours=1)))
ARGS = dict(site="site-demo", ehr_id="e", patient_ref="Patient/demo")


def _resources(comp: dict) -> list[dict]:
    comp = {**comp, "uid": {"_type": "OBJECT_VERSION_ID", "value": "aaaaaaaa-0000-4000-8000-000000000018::d::1"}}
    return to_fhir(comp, **ARGS).resources


def test_the_committed_template_is_what_the_builder_writes():
    builder = load("build_general_opt", REPO / "deploy" / "templates" / "build_general_opt.py")
    assert general.OPT_PATH.read_bytes() == builder.build()
    assert f"<value>{general.TEMPLATE_ID}</value>".encode() in builder.build()


def test_the_same_seed_gives_the_same_composition_and_subjects_differ():
    a = general.general_composition(7, "SYN-000001", VISIT)
    assert a == general.general_composition(7, "SYN-000001", VISIT)
    others = [general.general_composition(7, f"SYN-{i:06d}", VISIT) for i in range(2, 12)]
    assert any(o["content"] != a["content"] for o in others)


@pytest.mark.parametrize("subject", [f"SYN-{i:06d}" for i in range(8)])
def test_every_row_is_there_with_plausible_values_and_maps_to_valid_fhir(subject):
    comp = general.general_composition(2024, subject, VISIT)
    resources = _resources(comp)
    by_code = {(r["resourceType"], ((r.get("code") or {}).get("coding") or [{}])[0].get("code")): r for r in resources}
    bmi, head, smoking = by_code[("Observation", "39156-5")], by_code[("Observation", "9843-4")], \
        by_code[("Observation", "72166-2")]
    assert 18.5 <= bmi["valueQuantity"]["value"] <= 34.9 and bmi["valueQuantity"]["code"] == "kg/m2"
    assert 53.0 <= head["valueQuantity"]["value"] <= 60.0 and head["valueQuantity"]["code"] == "cm"
    assert smoking["valueCodeableConcept"]["coding"][0]["code"] in {"77176002", "8517006", "266919005"}
    alcohol = by_code[("Observation", "11331-6")]
    assert alcohol["valueCodeableConcept"]["coding"][0]["code"] in {"219006", "82581004", "783261004"}
    assert by_code[("ClinicalImpression", None)]["summary"] in general.SYNOPSES
    [report] = [r for r in resources if r["resourceType"] == "DiagnosticReport"]
    [finding] = [r for r in resources
                 if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "121071"]
    assert report["result"] == [{"reference": f"Observation/{finding['id']}"}] and finding["status"] == "final"
    assert (finding["bodySite"]["text"], finding["valueString"]) in general.STRUCTURES
    assert report["status"] == "final" and report["conclusion"] in general.IMPRESSIONS
    assert report["code"]["text"] in general.STUDIES
    [study] = [r for r in resources if r["resourceType"] == "ImagingStudy"]  # identified by its DICOM UID
    assert report["imagingStudy"] == [{"reference": f"ImagingStudy/{study['id']}"}] and study["status"] == "available"
    assert study["identifier"][1] == {"use": "official", "system": "urn:dicom:uid",
                                      "value": f"urn:oid:{general.study_uid(2024, subject)}"}
    [episode] = [r for r in resources if r["resourceType"] == "EpisodeOfCare"]
    [immunization] = [r for r in resources if r["resourceType"] == "Immunization"]
    assert episode["period"]["start"] and immunization["vaccineCode"]["text"] in general.VACCINES
    [relative] = [r for r in resources if r["resourceType"] == "FamilyMemberHistory"]
    assert relative["relationship"]["text"] in general.RELATIVES
    assert len([r for r in resources if r["resourceType"] == "Observation"]) == 5  # one event each, no birth; a finding
    [statement], [medication] = [[r for r in resources if r["resourceType"] == t]
                                 for t in ("MedicationStatement", "Medication")]
    assert statement["medicationReference"] == {"reference": f"Medication/{medication['id']}"}
    assert (medication["code"]["text"], medication["form"]["text"]) in general.MEDICATIONS
    [request, consent] = [r for r in resources if r["resourceType"] == "Consent"]  # asked, then given
    assert (request["status"], consent["status"]) == ("draft", "active")
    assert consent["provision"]["period"]["start"] and "end" not in consent["provision"]["period"]
    named = [i["value"]["value"] for e in comp["content"] if "informed_consent" in e["archetype_node_id"]
             for i in (e["description"] if "description" in e else e["activities"][0]["description"])["items"]
             if i["archetype_node_id"] == ("at0002" if "description" in e else "at0004")]  # the activity of each
    assert len(named) == 2 and len(set(named)) == 1 and named[0] in general.CONSENTED
    assert all(validate_fhir(r) == [] for r in resources)
    mapped = [r for r in resources if r["resourceType"] not in ("Encounter", "Composition")]
    assert compare_clinical({"content": comp["content"]},
                            {"content": to_openehr(mapped, template_id=general.TEMPLATE_ID)["content"]}) == []


@pytest.mark.integration
def test_it_commits_once_to_ehrbase_and_validates_in_hapi(ehrbase_urls, fhir_base_url):
    subject = f"SYNG{uuid.uuid4().hex[:8]}"  # a fresh subject every run: the servers are shared
    with OpenEHRClient(ehrbase_urls[0]) as cdr:
        cdr.upload_template(general.OPT_PATH.read_bytes())
        ehr = cdr.create_ehr(subject_id=subject, subject_namespace=SUBJECT_NAMESPACE)
        ref = general.seed_general(cdr, ehr.ehr_id, 2024, subject, VISIT)
        assert ref is not None and ref.version == 1
        assert general.seed_general(cdr, ehr.ehr_id, 2024, subject, VISIT) is None  # a re-run commits nothing
        stored = cdr.get_composition(ehr.ehr_id, ref.uid).content
    assert stored["archetype_details"]["template_id"]["value"] == general.TEMPLATE_ID
    resources = to_fhir(stored, **ARGS).resources
    assert {r["resourceType"] for r in resources} >= {"Observation", "ClinicalImpression", "DiagnosticReport",
                                                         "EpisodeOfCare", "Immunization", "FamilyMemberHistory",
                                                         "MedicationStatement", "Medication", "Consent",
                                                         "ImagingStudy"}
    assert {r["id"]: hapi_errors(fhir_base_url, r) for r in resources} == {r["id"]: [] for r in resources}
