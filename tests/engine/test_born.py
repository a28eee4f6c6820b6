"""A record born at the centre keeps its central identity when the site sends it back (sync.workflow.born)."""
import json

from sync.mapping import from_fhir, to_fhir
from sync.workflow.born import with_central_identity
from tests.fixtures import FHIR_CORPUS
from tests.mapping.test_oncology_careplan import administration_given, central_plan


def _site_version():
    """The tumour board plan as the reverse run writes it at a site, then the chemotherapy given added."""
    comp = from_fhir(central_plan(), template_id="t").composition
    comp["uid"] = {"_type": "OBJECT_VERSION_ID", "value": "5eed0000-0000-4000-8000-000000000017::site1::2"}
    comp["content"].append(administration_given())
    return comp


def test_entries_born_centrally_get_their_central_ids_back_and_what_the_site_added_keeps_ours():
    comp = _site_version()
    made = [r for r in to_fhir(comp, site="site1", ehr_id="e", patient_ref="Patient/p1").resources
            if r["resourceType"] not in ("Encounter", "Composition")]
    out = {r["resourceType"]: r for r in with_central_identity(comp, made)}
    assert {t: out[t]["id"] for t in ("CarePlan", "MedicationRequest", "ServiceRequest", "Goal")} == {
        "CarePlan": "cp1", "MedicationRequest": "mr1", "ServiceRequest": "sr1", "Goal": "g1"}
    assert all("identifier" not in out[t] for t in ("CarePlan", "MedicationRequest", "ServiceRequest", "Goal"))
    assert [a["reference"]["reference"] for a in out["CarePlan"]["activity"]] == ["MedicationRequest/mr1",
                                                                                  "ServiceRequest/sr1"]
    assert out["CarePlan"]["goal"] == [{"reference": "Goal/g1"}]
    given = out["MedicationAdministration"]
    assert given["identifier"][0]["system"] == "urn:conflictdesk:source" and given["id"] not in ("mr1", "cp1")


def test_a_composition_made_at_the_site_is_left_as_mapped():
    comp = _site_version()
    for entry in comp["content"]:
        entry.pop("feeder_audit", None)
    made = to_fhir(comp, site="site1", ehr_id="e", patient_ref="Patient/p1").resources
    assert with_central_identity(comp, made) is made


def test_a_central_lab_report_keeps_every_result_and_specimen_id_matched_by_code():
    """A FHIR-born entry holding several resources (MII KDS lab report: DiagnosticReport, result
    Observations, Specimen): each one made from it again takes the central id of the one it came from."""
    sent = [e["resource"] for e in json.loads((FHIR_CORPUS / "kds_lab_report.patient1.bundle.json").read_text())["entry"]
            if e["resource"]["resourceType"] not in ("Encounter", "Patient")]
    comp = from_fhir(sent, template_id="t").composition
    comp["uid"] = {"_type": "OBJECT_VERSION_ID", "value": "1ab00000-0000-4000-8000-000000000017::site1::2"}
    made = [r for r in to_fhir(comp, site="site1", ehr_id="e", patient_ref="Patient/p1").resources
            if r["resourceType"] in ("DiagnosticReport", "Observation", "Specimen")]
    out = with_central_identity(comp, made)
    central = {(r["resourceType"], r["id"]): r for r in sent}
    assert len({(r["resourceType"], r["id"]) for r in out}) == len(out)
    for r in out:
        assert (r["resourceType"], r["id"]) in central, r["resourceType"]
        origin = central[(r["resourceType"], r["id"])]
        if r["resourceType"] == "Observation":
            assert {c["code"] for c in r["code"]["coding"]} & {c["code"] for c in origin["code"]["coding"]}
    report = next(r for r in out if r["resourceType"] == "DiagnosticReport")
    assert {x["reference"] for x in report["result"]} <= {f"Observation/{i}" for t, i in central if t == "Observation"}


def test_an_analyte_recoded_at_the_site_never_takes_the_id_of_a_result_no_row_read():
    """The report's unread result (a LOINC code no row reads) is kept by reference, made by no node: the site's
    analyte, even with its code corrected, keeps the id of the result it came from, never the unread one's."""
    from tests.mapping.test_fhir_born import HB, ONE_RESULT
    unread = {**HB, "id": "x", "code": {"coding": [{"system": "http://loinc.org", "code": "99999-9"}]}}
    report = {**ONE_RESULT, "result": [{"reference": "Observation/x"}, {"reference": "Observation/hb"}]}
    comp = from_fhir([report, unread, HB], template_id="t").composition
    comp["uid"] = {"_type": "OBJECT_VERSION_ID", "value": "1ab00000-0000-4000-8000-000000000021::site1::2"}
    text = json.dumps(comp).replace('"code_string": "718-7"', '"code_string": "59260-0"')  # recoded at the site
    comp = json.loads(text)
    made = [r for r in to_fhir(comp, site="site1", ehr_id="e", patient_ref="Patient/p1").resources
            if r["resourceType"] == "Observation"]
    assert [r["id"] for r in with_central_identity(comp, made)] == ["hb"]
