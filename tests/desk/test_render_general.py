"""The clinical view reads the issue-18 rows as produced by the mapping: each resource is titled by what it
is and its values read as words with units (the same to_fhir output the desk shows for a synced entry)."""
from conflictdesk.desk.render import resource_rows
from sync.mapping import to_fhir
from tests.mapping import test_general_rows as rows_of

ARGS = dict(site="s", ehr_id="e", patient_ref="Patient/1")


def _rendered(*entries) -> list[list[tuple]]:
    resources = [r for r in to_fhir(rows_of._composition(*entries), **ARGS).resources
                 if r["resourceType"] not in ("Encounter", "Composition")]
    return [[(r.depth, r.label, r.value, r.code) for r in resource_rows(res)] for res in resources]


def test_bmi_and_head_circumference_read_with_their_units():
    bmi, head = _rendered(rows_of._vital(rows_of.BMI, 16.2, comment="measured twice"),
                          rows_of._vital(rows_of.HEAD, 13.5, "[in_i]"))
    assert bmi[0][:3] == (0, "Observation", "Body mass index (BMI) [Ratio]")
    assert (1, "value", "16.2 kg/m2", "") in bmi and (1, "note", "measured twice", "") in bmi
    assert head[0][2] == "Head Occipital-frontal circumference" and (1, "value", "13.5 in", "") in head


def test_a_smoking_status_reads_as_the_status_with_its_snomed_code():
    [smoking] = _rendered(rows_of._smoking("at0005", comment="quit 2019"))
    assert smoking[0][:3] == (0, "Observation", "Tobacco smoking status")
    assert (1, "value", "Former smoker", "SNOMED CT 8517006") in smoking


def test_a_clinical_impression_is_titled_by_its_summary():
    [ci] = _rendered(rows_of._synopsis("Stable disease on letrozole"))
    assert ci[0][:3] == (0, "ClinicalImpression", "Stable disease on letrozole")
    assert not [r for r in ci[1:] if r[1] == "summary"] and (1, "status", "completed", "") in ci


def test_an_imaging_report_reads_as_its_study_and_conclusion():
    [report] = _rendered(rows_of._imaging("at0076"))
    assert report[0][:3] == (0, "DiagnosticReport", "CT chest abdomen pelvis")
    assert (1, "conclusion", "No evidence of metastatic disease.", "") in report
    assert (1, "status", "final", "") in report


def test_an_episode_of_care_reads_its_period_and_status():
    [eoc] = _rendered(rows_of._episode(discharged="2025-01-24T11:30:00+01:00",
                                       category={"_type": "DV_TEXT", "value": "Elective"}))
    assert eoc[0][:2] == (0, "EpisodeOfCare")
    assert (1, "period", "2025-01-10 08:00 (+01:00) – 2025-01-24 11:30 (+01:00)", "") in eoc
    assert (1, "status", "finished", "") in eoc and (1, "type", "Elective", "") in eoc


def test_an_immunization_reads_its_vaccine_and_date():
    [imm] = _rendered(rows_of._vaccination(rows_of.INFLUENZA))
    assert imm[0][:2] == (0, "Immunization")
    assert (1, "vaccineCode", "Influenza vaccine", "") in imm
    assert (1, "occurrence", "2024-10-15 10:00 (+02:00)", "") in imm


def test_a_family_member_history_reads_relationship_and_condition():
    mother, = _rendered(rows_of._family(rows_of._relative("Mother", conditions=[(rows_of.BREAST_CANCER, None)])))
    assert mother[0][:2] == (0, "FamilyMemberHistory")
    assert (1, "relationship", "Mother", "") in mother
    assert (2, "code", "Malignant neoplasm of breast", "ICD-10 C50.9") in mother


def test_an_imaging_finding_reads_as_its_body_structure_and_text():
    [_, finding] = _rendered(rows_of._imaging("at0076", structures=[(rows_of.LIVER, "Two hypodense lesions")]))
    assert finding[0][:3] == (0, "Observation", "Finding")
    assert (1, "value", "Two hypodense lesions", "") in finding
    assert (1, "bodySite", "Liver structure", "SNOMED CT 10200004") in finding


def test_an_imaging_study_reads_as_its_dicom_uid_with_modality_and_description():
    from tests.mapping import test_imaging_study as studies
    report, study = _rendered(studies._study(rows_of._imaging("at0076"), description="CT CAP", modalities=[studies.CT]))
    assert report[0][:3] == (0, "DiagnosticReport", "CT chest abdomen pelvis")
    assert study[0][:3] == (0, "ImagingStudy", f"DICOM study {studies.UID}")
    assert (1, "description", "CT CAP", "") in study and (1, "status", "available", "") in study
    assert [r for r in study if r[1] == "modality"]
