"""FHIR-born data on the real servers (issue 21): HAPI -> the site's EHRbase -> an edit at the site -> HAPI.

The centre holds an external lab's report (MII KDS example: DiagnosticReport, its result Observations with
reference ranges, the Specimen, the performing Organization, the devices, the order); the site gets the
composition from_fhir builds (what the archetypes cannot hold rides in the entry's FEEDER_AUDIT); the site
corrects a value; what to_fhir makes of the stored composition goes back to HAPI.  The mapping and the
servers only: the engine's runs are tested in test_engine_real.py."""
from __future__ import annotations

import copy
import json
import uuid

import pytest

from sync.clients.openehr import OpenEHRClient
from sync.mapping import compare_clinical, feeder, from_fhir, rmpath, templates, to_fhir
from sync.mapping.residue import strip
from tests.fixtures import CORPUS_DIR

pytestmark = pytest.mark.integration

OPT = CORPUS_DIR.parents[2] / "deploy" / "templates" / "conflictdesk_oncology.v2.opt"
LAB = CORPUS_DIR / "fhir" / "kds_lab_report.patient1.bundle.json"
# the KDS analyte whose result is only a data-absent reason: the template's result element needs a value
# (EHRbase refuses the element without one), so this lab sends the other five
NO_VALUE = "mii-exa-test-data-patient-1-labobs-6"
ANALYTE = "openEHR-EHR-CLUSTER.laboratory_test_analyte.v1"
ADDED = ("dictionary_item_added", "iterable_item_added")
# accepted by the oncology template as from_fhir builds them (others need template names this one lacks)
ACCEPTED = ["kds_diagnosis.patient1.bundle.json", "kds_encounter_case.patient3.bundle.json",
            "kds_procedure.patient3-3.bundle.json", "observation_vitals_blood_pressure.json",
            "procedure_chemotherapy_f201.json", "onko_condition_primary_tumor.json"]


@pytest.fixture
def site(ehrbase_urls):
    with OpenEHRClient(ehrbase_urls[-1]) as cdr:
        cdr.upload_template(OPT.read_text(encoding="utf-8-sig"))
        templates.register(OPT)
        ehr = cdr.create_ehr(subject_id=str(uuid.uuid4()), subject_namespace="urn:conflictdesk:test:fhir-born").ehr_id
        yield cdr, ehr, templates.register(OPT).template_id


def _renamed(resources: list[dict], suffix: str, patient: str) -> list[dict]:
    """The resources under ids of this run (the central server is shared) and the run's own Patient."""
    text = json.dumps(resources)
    for r in resources:
        text = text.replace(f'{r["resourceType"]}/{r["id"]}"', f'{r["resourceType"]}/{r["id"]}-{suffix}"')
        text = text.replace(f'"id": "{r["id"]}"', f'"id": "{r["id"]}-{suffix}"')
    out = json.loads(text)
    for r in out:
        if isinstance(r.get("subject"), dict) and "reference" in r["subject"]:
            r["subject"] = {"reference": patient}
    return out


def _put_all(fhir, resources: list[dict]) -> None:
    fhir.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]})


def _same_code(a: dict, b: dict) -> bool:
    codes = {(c.get("system"), c.get("code")) for c in (a.get("code") or {}).get("coding", [])}
    return bool(codes & {(c.get("system"), c.get("code")) for c in (b.get("code") or {}).get("coding", [])})


def test_an_external_lab_report_reaches_the_site_and_a_site_edit_comes_back_with_ranges_and_specimen(fhir, site):
    cdr, ehr, template_id = site
    suffix = uuid.uuid4().hex[:8]
    patient = fhir.create({"resourceType": "Patient", "active": True}).id
    sent = [e["resource"] for e in json.loads(LAB.read_text())["entry"] if e["resource"]["id"] != NO_VALUE
            and e["resource"]["resourceType"] != "Encounter"]
    report = next(r for r in sent if r["resourceType"] == "DiagnosticReport")
    report["result"] = [x for x in report["result"] if not x["reference"].endswith(NO_VALUE)]
    sent = _renamed(sent, suffix, f"Patient/{patient}")
    for r in sent:
        r.pop("encounter", None)  # the KDS Encounter is the example's, not this patient's
    _put_all(fhir, sent)
    central = [fhir.read(r["resourceType"], r["id"]) for r in sent]  # as the centre holds them

    comp = from_fhir(central, template_id=template_id).composition
    written = cdr.create_composition(ehr, comp)
    at_site = cdr.get_composition(ehr, written.version_uid).content
    [entry] = [e for _, e in rmpath.entries(at_site)]
    assert entry["feeder_audit"]["original_content"]["formalism"] == "application/fhir+json"

    edited = copy.deepcopy(at_site)
    analyte = next(n for _, n in rmpath.walk(edited) if n.get("archetype_node_id") == ANALYTE)
    result = next(i for i in analyte["items"] if i["archetype_node_id"] == "at0001")
    new_value = result["value"]["magnitude"] + 1.25
    result["value"]["magnitude"] = new_value
    version = cdr.update_composition(ehr, written.version_uid, edited)
    stored = cdr.get_composition(ehr, version.version_uid).content

    back = to_fhir(stored, site="site2", ehr_id=ehr, patient_ref=f"Patient/{patient}").resources
    _put_all(fhir, [r for r in back if r["resourceType"] not in ("Encounter", "Composition")])
    again = [fhir.read(r["resourceType"], r["id"]) for r in back if r["resourceType"] not in ("Encounter", "Composition")]

    code = next(i for i in analyte["items"] if i["archetype_node_id"] == "at0024")["value"]["defining_code"]["code_string"]
    first = next(r for r in central if r["resourceType"] == "Observation"
                 and any(c["code"] == code for c in r["code"]["coding"]))
    twin = next(r for r in again if r["resourceType"] == "Observation" and _same_code(r, first))
    assert twin["valueQuantity"]["value"] == new_value != first["valueQuantity"]["value"]
    assert twin["referenceRange"] == first["referenceRange"]  # low/high, type, age, appliesTo: intact
    # the oncology template has no CLUSTER.specimen: the Specimen is kept whole in the entry's feeder audit
    # and the results name the centre's own, as sent
    specimen = next(r for r in central if r["resourceType"] == "Specimen")
    assert [k.resource for k in feeder.kept(entry) if k.resource["resourceType"] == "Specimen"] == [specimen]
    assert [r for r in again if r["resourceType"] == "Specimen"] == []
    assert twin["specimen"] == {"reference": f"Specimen/{specimen['id']}"}
    twin_report = next(r for r in again if r["resourceType"] == "DiagnosticReport")
    assert twin_report["performer"] == next(r for r in central if r["resourceType"] == "DiagnosticReport")["performer"]
    for r in central:  # the other results come back as the lab sent them
        if r["resourceType"] == "Observation" and r["id"] != first["id"]:
            other = next(x for x in again if x["resourceType"] == "Observation" and _same_code(x, r))
            assert [d for d in compare_clinical(r, {**strip(other), "subject": r["subject"]})
                    if d["kind"] not in ADDED] == [], r["id"]


@pytest.mark.parametrize("name", ACCEPTED)
def test_ehrbase_keeps_the_feeder_audit_and_the_stored_composition_gives_the_fhir_back(site, name):
    cdr, ehr, template_id = site
    doc = json.loads((CORPUS_DIR / "fhir" / name).read_text())
    sent = [e["resource"] for e in doc["entry"]] if doc["resourceType"] == "Bundle" else [doc]
    comp = from_fhir(sent, template_id=template_id).composition
    stored = cdr.get_composition(ehr, cdr.create_composition(ehr, comp).version_uid).content
    assert [e.get("feeder_audit") for _, e in rmpath.entries(stored)] == \
        [e.get("feeder_audit") for _, e in rmpath.entries(comp)]
    back = [strip(r) for r in to_fhir(stored, site="site2", ehr_id=ehr, patient_ref="Patient/x").resources]
    for r in sent:
        if r["resourceType"] in ("Patient", "Encounter", "Organization", "Practitioner", "PractitionerRole"):
            continue
        same = [b for b in back if b["resourceType"] == r["resourceType"] and (_same_code(b, r) or "code" not in r)]
        assert same, r["id"]
        diffs = [d for d in compare_clinical(r, {**same[0], "subject": r.get("subject")}) if d["kind"] not in ADDED]
        assert [d["path"] for d in diffs if not d["path"].startswith("root['status']")] == [], (name, r["id"])


def test_a_documents_sections_survive_ehrbase_and_come_back_as_sent(site):
    """The IPS document's problem and allergy sections: kept in the COMPOSITION's own feeder audit, which
    EHRbase stores as given; the stored composition gives them back as the sender wrote them."""
    cdr, ehr, template_id = site
    doc = json.loads((CORPUS_DIR / "fhir" / "ips_breast_cancer_document.bundle.json").read_text())
    held = ("Composition", "Patient", "Practitioner", "Organization", "Condition", "AllergyIntolerance")
    sent = [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] in held]
    document = next(r for r in sent if r["resourceType"] == "Composition")
    document["section"] = [s for s in document["section"] if s.get("entry") and all(
        e["reference"].split("/")[0] in held for e in s["entry"])]  # what the oncology template holds
    assert len(document["section"]) == 3
    for r in sent:  # the template's severity is its own at-codes: IPS's LOINC answers are refused (a person's case)
        r.pop("severity", None)
    comp = from_fhir(sent, template_id=template_id).composition
    stored = cdr.get_composition(ehr, cdr.create_composition(ehr, comp).version_uid).content
    assert stored.get("feeder_audit") == comp["feeder_audit"]
    back = to_fhir(stored, site="site2", ehr_id=ehr, patient_ref="Patient/x")
    assert not [x for x in back.losses if x.kind == "stale"]
    assert next(r for r in back.resources if r["resourceType"] == "Composition")["section"] == document["section"]


def test_ehrbase_stores_a_feeder_audit_four_times_the_largest_corpus_composition(site):
    """bench/feeder_size.py: the largest corpus composition is the IPS document (about 113 kB, 74 kB of it feeder
    audits), the largest single original_content the KDS lab report's (about 55 kB).  The lab report, its
    Specimen carrying a long note (kept whole in the entry's feeder audit: the template has no specimen
    cluster), makes a composition over four times that: EHRbase stores it and gives the feeder audit back to
    the byte."""
    cdr, ehr, template_id = site
    sent = [e["resource"] for e in json.loads(LAB.read_text())["entry"] if e["resource"]["id"] != NO_VALUE
            and e["resource"]["resourceType"] != "Encounter"]
    report = next(r for r in sent if r["resourceType"] == "DiagnosticReport")
    report["result"] = [x for x in report["result"] if not x["reference"].endswith(NO_VALUE)]
    specimen = next(r for r in sent if r["resourceType"] == "Specimen")
    specimen["note"] = [{"text": "Makroskopie: " + "Gewebeprobe ohne Besonderheiten; Schnittränder frei. " * 9000}]
    comp = from_fhir(sent, template_id=template_id).composition
    size = len(json.dumps(comp, ensure_ascii=False).encode())
    assert size > 4 * 113_359
    stored = cdr.get_composition(ehr, cdr.create_composition(ehr, comp).version_uid).content
    assert [e.get("feeder_audit") for _, e in rmpath.entries(stored)] == \
        [e.get("feeder_audit") for _, e in rmpath.entries(comp)]
    assert [k.resource for _, e in rmpath.entries(stored) for k in feeder.kept(e)
            if k.resource["resourceType"] == "Specimen"] == [specimen]
