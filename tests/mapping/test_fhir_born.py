"""FHIR-born data keeps everything at the site (issue 21).

What FHIR sent beyond the archetypes' elements is kept in the entry's FEEDER_AUDIT (original_content: the
source resources, application/fhir+json) and given back while the openEHR content it describes is unchanged:
an edit at the site wins, and the stale FHIR detail is reported, never re-applied."""
import copy
import json

import pytest

from sync.mapping import compare_clinical, feeder, from_fhir, rmpath, to_fhir, validate_fhir
from sync.mapping.report import run
from sync.mapping.residue import strip

from .conftest import corpus_files, load

UID = "aaaaaaaa-0000-4000-8000-000000000021::x::1"
ADDED = ("dictionary_item_added", "iterable_item_added")
ANALYTE = "openEHR-EHR-CLUSTER.laboratory_test_analyte.v1"


def _resources(path) -> list[dict]:
    doc = load(path)
    return [e["resource"] for e in doc["entry"]] if doc["resourceType"] == "Bundle" else [doc]


def _forward(composition: dict, patient: str = "Patient/1"):
    return to_fhir({**copy.deepcopy(composition), "uid": {"value": UID}}, site="s", ehr_id="e", patient_ref=patient)


def _twin(resources: list[dict], source: dict) -> dict:
    """The resource made again from the source's node: same type, a code in common, else the first."""
    same = [r for r in resources if r["resourceType"] == source["resourceType"]]
    codes = {(c.get("system"), c.get("code")) for c in (source.get("code") or {}).get("coding", [])}
    return strip(next((r for r in same if codes & {(c.get("system"), c.get("code"))
                                                   for c in (r.get("code") or {}).get("coding", [])}), same[0]))


def _diffs(source: dict, twin: dict) -> list[dict]:
    return [d for d in compare_clinical(source, {**twin, "subject": source.get("subject", twin.get("subject"))})
            if d["kind"] not in ADDED]


# ------------------------------------------------------------------ the corpus
@pytest.mark.parametrize("path", corpus_files("fhir/kds_*.json"), ids=lambda p: p.name)
def test_every_kds_bundle_round_trips_equal_on_clinical_content(path):
    [rec] = run([path]).records
    assert rec.state == "round-tripped", rec.line()


def test_no_corpus_fhir_file_fails_and_partial_ones_only_lose_what_fhir_itself_refuses():
    """partial: a code outside its required binding (HAPI would not parse it back), a resource no file claims,
    a Composition's own identifier/sections: nothing else is declared lost."""
    rep = run(corpus_files("fhir/*.json"))
    assert rep.failed == 0, rep.lines()
    for rec in rep.records:
        for loss in rec.losses:
            element = loss["path"].split(":", 1)[1] if ":" in loss["path"] else ""
            assert element in ("", "status", "intent", "identifier", "section") or element.startswith("section"), \
                (rec.file, loss)
            if element in ("status", "intent"):  # said as what it is: the sender's code is no FHIR code
                assert "required value set" in loss["reason"] and "invalid FHIR" in loss["reason"], (rec.file, loss)


def test_a_valid_status_the_mapping_cannot_hold_is_not_called_invalid():
    from sync.mapping.from_fhir import _why_lost

    assert "invalid FHIR" in _why_lost({"resourceType": "Procedure", "status": "final"}, "status")
    assert _why_lost({"resourceType": "Procedure", "status": "on-hold"}, "status") == \
        "no openEHR element for this FHIR data in the mapping"
    assert _why_lost({"resourceType": "Observation", "issued": "2020"}, "issued") == \
        "no openEHR element for this FHIR data in the mapping"


def test_the_feeder_audit_holds_the_source_resources_exactly_and_names_them():
    resources = _resources(next(iter(corpus_files("fhir/kds_lab_report.patient1.bundle.json"))))
    out = from_fhir(resources, template_id="t")
    [entry] = [e for _, e in rmpath.entries(out.composition)]
    fa = entry["feeder_audit"]
    assert fa["original_content"]["_type"] == "DV_PARSABLE"
    assert fa["original_content"]["formalism"] == "application/fhir+json"
    bundle = json.loads(fa["original_content"]["value"])
    kept = {f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"] for e in bundle["entry"]}
    for r in resources:
        ref = f"{r['resourceType']}/{r['id']}"
        if r["resourceType"] not in ("Patient", "Encounter"):
            assert kept[ref] == r  # exactly as sent, side resources (Organization, Device, ServiceRequest) too
    ids = {i["id"].split("/_history")[0] for i in fa["originating_system_item_ids"]}
    assert ids == set(kept) and fa["originating_system_audit"]["system_id"] == "FHIR"
    assert validate_fhir(bundle) == []


# ------------------------------------------------------------------ a site edit wins
def _kds_lab():
    resources = _resources(next(iter(corpus_files("fhir/kds_lab_report.patient1.bundle.json"))))
    return resources, from_fhir(resources, template_id="t")


def _first_result(entry: dict) -> dict:
    analyte = next(n for _, n in rmpath.walk(entry) if n.get("archetype_node_id") == ANALYTE)
    return next(i for i in analyte["items"] if i["archetype_node_id"] == "at0001")


def test_an_edited_lab_value_comes_back_changed_with_its_reference_range_and_specimen_intact():
    resources, out = _kds_lab()
    comp = copy.deepcopy(out.composition)
    [entry] = comp["content"]
    result = _first_result(entry)
    old = result["value"]["magnitude"]
    result["value"]["magnitude"] = old + 1.5  # the site corrects the value
    res = _forward(comp).resources
    obs1 = next(r for r in resources if r["id"] == "mii-exa-test-data-patient-1-labobs-1")
    twin = _twin(res, obs1)
    assert twin["valueQuantity"]["value"] == old + 1.5
    assert twin["referenceRange"] == obs1["referenceRange"]  # low/high from normal_range, age/appliesTo kept
    for name in ("identifier", "basedOn", "device", "encounter", "method", "category"):
        assert [d for d in compare_clinical({"resourceType": "Observation", name: obs1[name]},
                                            {"resourceType": "Observation", name: twin[name]})
                if d["kind"] not in ADDED] == [], name  # our laboratory category may be added beside the sender's
    specimen = next(r for r in resources if r["resourceType"] == "Specimen")
    assert _diffs(specimen, _twin(res, specimen)) == []
    report = next(r for r in resources if r["resourceType"] == "DiagnosticReport")
    assert _twin(res, report)["performer"] == report["performer"]


def test_an_element_that_interprets_the_value_is_stale_after_a_value_edit_and_reported():
    resources, out = _kds_lab()
    obs1 = next(r for r in resources if r["id"] == "mii-exa-test-data-patient-1-labobs-1")
    comp = copy.deepcopy(out.composition)
    [entry] = comp["content"]
    kept = json.loads(entry["feeder_audit"]["original_content"]["value"])
    source = next(e["resource"] for e in kept["entry"] if e["resource"]["id"] == obs1["id"])
    assert source == obs1 and "interpretation" in obs1  # kept exactly; the KDS result says 'normal' 
    result = _first_result(entry)
    result["value"]["magnitude"] += 100
    fwd = _forward(comp)
    twin = _twin(fwd.resources, obs1)
    assert twin.get("interpretation") != obs1["interpretation"]  # 'normal' no longer said of the new value
    assert f"Observation/{obs1['id']}:interpretation" in {x.path for x in fwd.losses if x.kind == "stale"}
    assert twin["referenceRange"] == obs1["referenceRange"]  # the range does not depend on the value


def test_a_medication_changed_at_the_site_replaces_the_medication_reference_sent():
    """medication[x] is one choice: the sender's medicationReference stands for the medication the mapping
    makes; once the site changes the drug, the reference is stale and the site's medication goes out."""
    resources = _resources(next(iter(corpus_files("fhir/kds_medication_statement.patient1.bundle.json"))))
    ms = next(r for r in resources if r["resourceType"] == "MedicationStatement")
    out = from_fhir(resources, template_id="t")
    assert _twin(_forward(out.composition).resources, ms)["medicationReference"] == ms["medicationReference"]
    comp = copy.deepcopy(out.composition)
    entry = next(e for _, e in rmpath.entries(comp) if "medication_statement" in e["archetype_node_id"])
    name = next(n for _, n in rmpath.walk(entry) if n.get("archetype_node_id") == "at0006" and "value" in n)
    name["value"] = {"_type": "DV_TEXT", "value": "Paracetamol 500 mg"}
    fwd = _forward(comp)
    twin = _twin(fwd.resources, ms)
    assert "medicationReference" not in twin and twin["medicationCodeableConcept"]["text"] == "Paracetamol 500 mg"
    assert f"MedicationStatement/{ms['id']}:medicationReference" in {x.path for x in fwd.losses if x.kind == "stale"}
    assert validate_fhir(twin) == []


def test_an_unchanged_entry_gives_everything_back_and_reports_nothing_stale():
    resources, out = _kds_lab()
    fwd = _forward(out.composition)
    assert not [x for x in fwd.losses if x.kind == "stale"]
    for r in resources:
        if r["resourceType"] in ("DiagnosticReport", "Observation"):
            assert _diffs(r, _twin(fwd.resources, r)) == [], r["id"]


def test_openehr_born_entries_get_no_feeder_audit():
    comp = {**load(next(iter(corpus_files("openehr/compositions/kds_lab_report.patient1.composition.json")))),
            "uid": {"value": UID}}
    res = to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources
    back = from_fhir(res, template_id="t", base_composition=comp).composition
    assert not [e for _, e in rmpath.entries(back) if feeder.kept(e)]


def test_a_kept_bundle_that_is_no_fhir_is_ignored_not_applied():
    entry = {"feeder_audit": {"originating_system_audit": {"system_id": "FHIR"},
                              "original_content": {"formalism": "application/fhir+json", "value": "not json"}}}
    assert feeder.kept(entry) == [] and feeder.restore(entry, [({"resourceType": "Observation"}, "")]) == []


# ------------------------------------------------------------------ homes in openEHR first
def test_the_labs_performer_has_an_openehr_home_not_only_the_feeder_audit():
    resources, out = _kds_lab()
    report = next(r for r in resources if r["resourceType"] == "DiagnosticReport")
    [entry] = out.composition["content"]
    [part] = entry["other_participations"]
    assert part["function"]["value"] == "performer"
    assert part["performer"]["external_ref"]["id"]["value"] == report["performer"][0]["reference"]
    bundle = json.loads(entry["feeder_audit"]["original_content"]["value"])
    kept = next(e for e in bundle["entry"] if e["resource"]["id"] == report["id"])
    assert "performer" not in {x["valueString"] for ext in kept.get("extension", []) for x in ext["extension"]
                               if x["url"] == "element"}  # the mapping gives it back: nothing to keep for it


def test_an_openehr_born_performer_participation_is_the_reports_performer_and_comes_back():
    comp = {**load(next(iter(corpus_files("openehr/compositions/kds_lab_report.patient1.composition.json")))),
            "uid": {"value": UID}}
    entry = next(e for _, e in rmpath.entries(comp) if "laboratory_test_result" in e["archetype_node_id"])
    entry["other_participations"] = [{"_type": "PARTICIPATION", "function": {"_type": "DV_TEXT", "value": "performer"},
                                      "performer": {"_type": "PARTY_IDENTIFIED", "name": "Labor Berlin"}}]
    res = to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources
    report = next(r for r in res if r["resourceType"] == "DiagnosticReport")
    assert report["performer"] == [{"display": "Labor Berlin"}] and validate_fhir(report) == []
    back = from_fhir(res, template_id="t", base_composition=comp).composition
    assert compare_clinical(comp, back) == []


def test_a_resource_the_mapping_gives_back_whole_is_no_side_resource():
    """Its twin, not its kept copy, is what a round-trip check compares (the guard found a dropped systolic
    only that way)."""
    hr = load(next(iter(corpus_files("fhir/observation_vitals_heart_rate.json"))))
    comp = from_fhir([hr], template_id="t").composition
    [k] = feeder.kept(comp["content"][0])
    assert k.anchor is not None and k.node is not None and feeder.side_copies(comp) == {}


def test_a_specimen_the_template_has_no_cluster_for_is_kept_whole_in_the_feeder_audit_and_comes_back_by_reference():
    """A site template whose specimen slot is unfilled (the oncology template) refuses CLUSTER.specimen: the
    Specimen is a side resource of the report's entry instead, nothing declared lost, the results name it as sent."""
    resources = _resources(next(iter(corpus_files("fhir/kds_lab_report.patient1.bundle.json"))))
    held = frozenset({"openEHR-EHR-OBSERVATION.laboratory_test_result.v1", ANALYTE})
    out = from_fhir(resources, template_id="t", archetypes=held)
    [entry] = out.composition["content"]
    assert not any(n.get("archetype_node_id") == "openEHR-EHR-CLUSTER.specimen.v1" for _, n in rmpath.walk(entry))
    specimen = next(r for r in resources if r["resourceType"] == "Specimen")
    assert [k.resource for k in feeder.kept(entry) if k.node is None and k.resource["resourceType"] == "Specimen"] \
        == [specimen]
    assert [x for x in out.losses if "Specimen" in x.path] == []
    res = _forward(out.composition).resources
    assert [r for r in res if r["resourceType"] == "Specimen"] == []
    for obs in (r for r in resources if r["resourceType"] == "Observation" and "valueQuantity" in r):
        assert _twin(res, obs)["specimen"] == obs["specimen"]
    # the control: a template that holds the cluster gets the Specimen as its node
    whole = from_fhir(resources, template_id="t", archetypes=held | {"openEHR-EHR-CLUSTER.specimen.v1"})
    assert any(n.get("archetype_node_id") == "openEHR-EHR-CLUSTER.specimen.v1"
               for _, n in rmpath.walk(whole.composition["content"][0]))


# ------------------------------------------------------------------ a lab result alone, a report of one result
LAB_CATEGORY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                             "code": "laboratory"}]}
HB = {"resourceType": "Observation", "id": "hb", "status": "final", "category": [LAB_CATEGORY],
      "code": {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin"}]},
      "subject": {"reference": "Patient/1"}, "effectiveDateTime": "2026-11-30T08:15:00+01:00",
      "valueQuantity": {"value": 13.1, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}}
ONE_RESULT = {"resourceType": "DiagnosticReport", "id": "rep", "status": "final",
              "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}],
              "code": {"coding": [{"system": "http://loinc.org", "code": "11502-2", "display": "Laboratory report"}]},
              "subject": {"reference": "Patient/1"}, "effectiveDateTime": "2026-11-30T08:15:00+01:00",
              "result": [{"reference": "Observation/hb"}]}


def test_a_lab_result_sent_alone_makes_an_entry_the_rm_accepts_and_comes_back_as_sent():
    """HISTORY.origin (1..1) and the test name (at0005, 1..1 in our templates) have no report to come from:
    the event time and the result's own code give them (EHRbase refused the entry before)."""
    out = from_fhir([copy.deepcopy(HB)], template_id="t")
    [entry] = [e for _, e in rmpath.entries(out.composition)]
    assert entry["data"]["origin"] == {"_type": "DV_DATE_TIME", "value": HB["effectiveDateTime"]}
    [name] = [i for i in entry["data"]["events"][0]["data"]["items"] if i["archetype_node_id"] == "at0005"]
    assert name["value"]["value"] == "Hemoglobin" and name["value"]["defining_code"]["code_string"] == "718-7"
    made = _forward(out.composition).resources
    assert [r["resourceType"] for r in made if r["resourceType"] in ("Observation", "DiagnosticReport")] == [
        "Observation"]
    assert out.losses == [] and _diffs(HB, _twin(made, HB)) == []


def test_a_report_sent_with_one_result_comes_back_as_that_report_not_collapsed_into_its_result():
    out = from_fhir([copy.deepcopy(ONE_RESULT), copy.deepcopy(HB)], template_id="t")
    made = _forward(out.composition).resources
    assert sorted(r["resourceType"] for r in made if r["resourceType"] in ("Observation", "DiagnosticReport")) == [
        "DiagnosticReport", "Observation"]
    assert out.losses == [] and _diffs(ONE_RESULT, _twin(made, ONE_RESULT)) == [] and _diffs(HB, _twin(made, HB)) == []


def test_a_fhir_born_documents_author_and_custodian_are_kept_by_reference_in_the_compositions_feeder_audit():
    """The IPS document's Composition names its author (Practitioner) and custodian (Organization): side
    resources of the composition level, kept whole in the composition's own feeder audit, as an entry keeps
    its own; the references come back as sent and only the Patient (the EHR's subject) and the Composition's
    identifier (0..1, ours) are declared."""
    resources = _resources(next(iter(corpus_files("fhir/ips_breast_cancer_document.bundle.json"))))
    [doc] = [r for r in resources if r["resourceType"] == "Composition"]
    out = from_fhir(copy.deepcopy(resources), template_id="t")
    side = {f"{r['resourceType']}/{r['id']}": r for r in feeder.side_resources(out.composition)}
    for ref in (doc["author"][0]["reference"], doc["custodian"]["reference"]):
        sent = next(r for r in resources if f"{r['resourceType']}/{r['id']}" == ref)
        assert side[ref] == sent
    assert sorted(x.path.split(":", 1)[1] if ":" in x.path else x.path.split("/")[0]
                  for x in out.losses) == ["Patient", "identifier"]
    back = next(r for r in _forward(out.composition).resources if r["resourceType"] == "Composition")
    assert strip(back)["author"] == doc["author"] and strip(back)["custodian"] == doc["custodian"]


def test_a_reports_result_no_row_reads_is_kept_whole_and_never_lends_its_code_to_another_result():
    """A report with haemoglobin (a LOINC code the analyte row reads) and a result whose code no row reads: the
    unread one is kept whole in the feeder audit, not paired with the haemoglobin's resource.  Paired, it gave
    that resource its code back: the site's haemoglobin went back to FHIR as the other test, and a site edit of
    the haemoglobin value as that test's value."""
    other = {**copy.deepcopy(HB), "id": "x", "code": {"coding": [{"system": "http://loinc.org", "code": "99999-9"}]},
             "valueQuantity": {"value": 5.5, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}}
    report = {**copy.deepcopy(ONE_RESULT), "result": [{"reference": "Observation/x"}, {"reference": "Observation/hb"}]}
    out = from_fhir([report, copy.deepcopy(other), copy.deepcopy(HB)], template_id="t")
    [entry] = [e for _, e in rmpath.entries(out.composition)]
    assert [k.resource["id"] for k in feeder.kept(entry) if k.anchor is None] == ["x"]  # kept whole, by reference
    made = _forward(out.composition).resources
    assert [(o["code"]["coding"][0]["code"], o["valueQuantity"]["value"]) for o in made
            if o["resourceType"] == "Observation"] == [("718-7", 13.1)]
    analyte = next(n for _, n in rmpath.walk(entry) if n.get("archetype_node_id") == ANALYTE)
    next(i for i in analyte["items"] if i["archetype_node_id"] == "at0001")["value"]["magnitude"] = 12.0
    edited = [(o["code"]["coding"][0]["code"], o["valueQuantity"]["value"])
              for o in _forward(out.composition).resources if o["resourceType"] == "Observation"]
    assert edited == [("718-7", 12.0)]


# ------------------------------------------------------------------ a FHIR-born document's sections
def _ips():
    resources = _resources(next(iter(corpus_files("fhir/ips_breast_cancer_document.bundle.json"))))
    doc = next(r for r in resources if r["resourceType"] == "Composition")
    return resources, doc, from_fhir(resources, template_id="t")


def _document(resources: list[dict]) -> dict:
    return next(r for r in resources if r["resourceType"] == "Composition")


def test_a_fhir_born_documents_sections_come_back_as_sent_while_the_site_changed_nothing():
    resources, doc, out = _ips()
    assert not [x for x in out.losses if x.path.startswith("Composition/") and "section" in x.path]
    fwd = _forward(out.composition)
    assert not [x for x in fwd.losses if x.kind == "stale"]  # an AllergyIntolerance's patient was, wrongly
    assert _document(fwd.resources)["section"] == doc["section"]  # titles, LOINC codes, narrative, entries


def test_a_site_edit_of_what_a_section_describes_gives_our_sections_and_reports_the_senders_stale():
    """The Medication section's narrative names the doses sent: after a site edit of one of them it would
    say what the record no longer says."""
    resources, doc, out = _ips()
    comp = copy.deepcopy(out.composition)
    entry = next(e for _, e in rmpath.entries(comp) if "medication_statement" in e["archetype_node_id"])
    name = next(n for _, n in rmpath.walk(entry) if n.get("archetype_node_id") == "at0006" and "value" in n)
    name["value"] = {"_type": "DV_TEXT", "value": "Tamoxifen 10 mg"}
    fwd = _forward(comp)
    mine = _document(fwd.resources)
    assert mine["section"] != doc["section"] and not any("title" in s or "text" in s for s in mine["section"])
    made = {f"{r['resourceType']}/{r['id']}" for r in fwd.resources}
    assert {e["reference"] for s in mine["section"] for e in s["entry"]} <= made  # ours reference what was made
    assert f"Composition/{doc['id']}:section" in {x.path for x in fwd.losses if x.kind == "stale"}


def test_an_entry_the_site_adds_to_a_fhir_born_document_is_not_left_out_of_its_sections():
    resources, doc, out = _ips()
    comp = copy.deepcopy(out.composition)
    added = copy.deepcopy(next(e for _, e in rmpath.entries(comp) if "problem_diagnosis" in e["archetype_node_id"]))
    added.pop("feeder_audit")  # recorded at the site
    comp["content"].append(added)
    fwd = _forward(comp)
    mine = _document(fwd.resources)
    listed = {e["reference"] for s in mine["section"] for e in s.get("entry", [])}
    conditions = [f"Condition/{r['id']}" for r in fwd.resources if r["resourceType"] == "Condition"]
    assert len(conditions) == 3 and set(conditions) <= listed  # the site's own Condition among them
    assert f"Composition/{doc['id']}:section" in {x.path for x in fwd.losses if x.kind == "stale"}


def test_a_header_the_sync_made_up_sends_no_encounter_to_the_centre():
    """Resources sent without an Encounter get a composition header of ours (composer 'ConflictDesk sync',
    setting 'other care', the earliest effective time): mapped forward it would be an encounter nobody had."""
    bp = load(next(iter(corpus_files("fhir/observation_vitals_blood_pressure.json"))))
    fwd = _forward(from_fhir([bp], template_id="t").composition)
    assert [r["resourceType"] for r in fwd.resources] == ["Observation"]
    resources = _resources(next(iter(corpus_files("fhir/kds_encounter_case.patient3.bundle.json"))))
    sent = _forward(from_fhir(resources, template_id="t").composition)
    assert "Encounter" in [r["resourceType"] for r in sent.resources]  # the sender's own encounter comes back
    comp = from_fhir([bp], template_id="t").composition
    comp["composer"] = {"_type": "PARTY_IDENTIFIED", "name": "Dr. Site"}  # recorded again at the site: its header
    assert "Encounter" in [r["resourceType"] for r in _forward(comp).resources]
