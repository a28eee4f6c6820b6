"""Issue 17 pathology row on a real CDR: a pathology report holding CLUSTER.figo_staging_cancer.v1,
CLUSTER.tumour_invasion.v0, CLUSTER.tumour_resection_margins.v0 and CLUSTER.anatomical_pathology_exam.v0, committed FLAT under the oncology template v2
at EHRbase (site1), reads back as the canonical composition that maps to the mCODE cancer stage, the invasion
status and the surgical margin Observations (HAPI $validate: 0 errors, the mCODE profile checked) and back into
the same clusters; the microscopic examination maps to its narrative Observation (LOINC 22635-7)."""
import uuid
from datetime import datetime, timezone

import pytest

from sync.demo.flat import TEMPLATE_ID, FlatComposition, iso
from sync.mapping import compare_clinical, from_fhir, to_fhir

from .hapi import hapi_errors

OPT = "deploy/templates/conflictdesk_oncology.v2.opt"
WHEN = datetime(2025, 6, 2, 10, 0, tzinfo=timezone.utc)


def hysterectomy_report() -> dict:
    flat = FlatComposition(WHEN, facility="Synthetic Oncology Centre", composer="Dr Synthetic Pathologist")
    path = flat.entry("laboratory_test_result")
    event = f"{path}/any_event:0"
    flat.set(f"{event}/time", iso(WHEN))
    flat.set(f"{event}/test_name", "Radical hysterectomy, histopathology")
    figo = f"{event}/figo_staging_of_gynaecological_cancer:0"
    flat.local(f"{figo}/staging_criteria", "at0007", "Cervix uteri")
    flat.set(f"{figo}/figo_stage", "IB2")
    flat.set(f"{figo}/figo_version", "2018")
    for i, (tissue, code, rubric) in enumerate((("Parametrium", "at0005", "Absent"),
                                                ("Cervical stroma", "at0014", "Present - diffuse/extensive"))):
        invasion = f"{event}/tumour_-_direct_invasion:{i}"
        flat.set(f"{invasion}/tissue_name", tissue)
        flat.local(f"{invasion}/direct_invasion", code, rubric)
    margin = f"{event}/surgical_resection_margins:0"
    flat.set(f"{margin}/margin_name", "Vaginal cuff margin")
    flat.local(f"{margin}/marginal_involvement", "at0015", "Absent")
    flat.set(f"{margin}/tumour_absent:0/distance_from_resection_margin", magnitude=8.0, unit="mm")
    exam = f"{event}/anatomical_pathology_examination:0"
    flat.local(f"{exam}/examination_type", "at0021", "Microscopic examination")
    flat.set(f"{exam}/anatomical_pathology_finding:0/finding_label", "Tumour")
    flat.set(f"{exam}/anatomical_pathology_finding:0/finding_description", "Squamous cell carcinoma, 24 mm")
    flat.set(f"{exam}/examination_description", "Sections of the cervix show an invasive carcinoma.")
    flat.local(f"{event}/overall_test_status:0", "at0038", "Final")
    return flat.build()


@pytest.mark.integration
def test_figo_stage_invasion_and_margin_commit_to_ehrbase_and_map_to_valid_observations(ehrbase_urls, fhir_base_url):
    from pathlib import Path

    from sync.clients.openehr import OpenEHRClient

    root = Path(__file__).resolve().parents[2]
    with OpenEHRClient(ehrbase_urls[0]) as cdr:
        cdr.upload_template((root / OPT).read_bytes())
        ehr = cdr.create_ehr(subject_id=f"SYNFIGO{uuid.uuid4().hex[:8]}", subject_namespace="conflictdesk-test").ehr_id
        ref = cdr.create_composition(ehr, hysterectomy_report(), template_id=TEMPLATE_ID)
        comp = cdr.get_composition(ehr, ref.version_uid).content
    resources = to_fhir(comp, site="s", ehr_id=ehr, patient_ref="Patient/1").resources
    [stage] = [r for r in resources if r["resourceType"] == "Observation"
               and r["code"]["coding"][0]["code"] == "385361009"]
    assert stage["valueCodeableConcept"]["coding"][0]["code"] == "C96250"  # FIGO Stage IB2
    assert stage["method"]["coding"][0]["code"] == "106250008"
    invasions = [r for r in resources if r["resourceType"] == "Observation"
                 and r["code"]["coding"][0]["code"] == "370052007"]
    assert [(r["bodySite"]["text"], r["valueCodeableConcept"]["coding"][0]["code"]) for r in invasions] == [
        ("Parametrium", "2667000"), ("Cervical stroma", "52101004")]
    [margin] = [r for r in resources if r["resourceType"] == "Observation"
                and r["code"]["coding"][0]["code"] == "396631001"]
    assert margin["bodySite"]["text"] == "Vaginal cuff margin"
    assert margin["component"][0]["valueCodeableConcept"]["coding"][0]["code"] == "260385009"
    [micro] = [r for r in resources if r["resourceType"] == "Observation"
               and r["code"]["coding"][0]["code"] == "22635-7"]
    assert micro["valueString"] == "Sections of the cervix show an invasive carcinoma."
    assert micro["component"] == [{"code": {"text": "Tumour"}, "valueString": "Squamous cell carcinoma, 24 mm"}]
    for r in resources:
        assert hapi_errors(fhir_base_url, r) == [], r["resourceType"]
    back = from_fhir(resources, template_id=TEMPLATE_ID, base_composition=comp)
    assert compare_clinical(comp, back.composition) == [] and back.losses == []


@pytest.mark.integration
def test_mii_s_icd_o_3_histology_reaches_the_site_as_a_microscopic_finding_and_comes_back(ehrbase_urls, fhir_base_url):
    """The corpus histology Observation (8500/3, topography C50.4, a specimen): the site's EHRbase takes the
    composition from_fhir builds under the oncology template (the ICD-O-3 code in the finding's 'Pathology
    interpretation'); what the stored composition maps to is the sent Observation, valid at HAPI.  The corpus
    example has no effective time, which an openEHR event must have: the mapping invents none, declares the
    entry refused (rmcheck) and EHRbase refuses it too (a person decides), so this lab sends the date of its report."""
    import json
    from pathlib import Path

    from sync.clients.errors import InvalidRequest
    from sync.clients.openehr import OpenEHRClient
    from sync.mapping import rmcheck, templates
    from sync.mapping.residue import strip

    from .conftest import corpus_files, load

    root = Path(__file__).resolve().parents[2]
    info = templates.register(root / OPT)
    sent = load(next(iter(corpus_files("fhir/onko_histology_icdo3.json"))))
    refused = from_fhir([json.loads(json.dumps(sent))], template_id=info.template_id)
    undated = refused.composition
    assert [(x.path, x.kind) for x in refused.losses] == [(f"Observation/{sent['id']}", "refused")]
    assert [m.rule for m in rmcheck.missing(undated)] == ["rm.HISTORY.origin", "rm.POINT_EVENT.time"]
    sent = {**sent, "effectiveDateTime": "2022-04-21"}
    built = from_fhir([json.loads(json.dumps(sent))], template_id=info.template_id)
    assert built.losses == [] and rmcheck.missing(built.composition) == []
    with OpenEHRClient(ehrbase_urls[0]) as cdr:
        cdr.upload_template((root / OPT).read_bytes())
        ehr = cdr.create_ehr(subject_id=f"SYNHIST{uuid.uuid4().hex[:8]}", subject_namespace="conflictdesk-test").ehr_id
        with pytest.raises(InvalidRequest):  # no time was sent, none is made up
            cdr.create_composition(ehr, undated)
        stored = cdr.get_composition(ehr, cdr.create_composition(ehr, built.composition).version_uid).content
    [back] = [r for r in to_fhir(stored, site="s", ehr_id=ehr, patient_ref="Patient/example").resources
              if r["resourceType"] == "Observation"]
    assert [d for d in compare_clinical(sent, strip(back))
            if d["kind"] not in ("dictionary_item_added", "iterable_item_added")] == []
    assert hapi_errors(fhir_base_url, back) == []
