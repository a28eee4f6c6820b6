"""The header of a composition whose root archetype has no model file: the document alone (composition.py,
``document_only``).

A report, a report-result, a case, a register entry...: every composition has a name, composer, time,
category and language, which the FHIR Composition of every row holds; nothing names an encounter, so no
Encounter is made.  The rest of the header (setting, facility, other_context: a report's id and status) rides
in that Composition's residue and comes back exactly, with and without the source composition."""
import copy

import pytest

from sync.mapping import compare_clinical, from_fhir, templates, to_fhir, to_openehr, validate_fhir

from .conftest import corpus_files, load
from .hapi import hapi_errors

HEADER = ("name", "language", "territory", "category", "composer", "context")
UID = "0b5e3c4e-1111-4222-8333-94444444d0c5::site-a::1"
# corpus compositions whose roots have no model file: a report (KDS Diagnose) and a report-result (Laborbefund)
REPORTS = ["kds_diagnosis.patient1.composition.json", "lab_laborbefund.composition.json",
           "kds_procedure.patient3-3.composition.json"]


def _comp(name: str) -> dict:
    c = load(next(iter(corpus_files(f"openehr/compositions/{name}"))))
    return {**c, "uid": {"_type": "OBJECT_VERSION_ID", "value": UID}}


def _header(c: dict) -> dict:
    return {k: c[k] for k in HEADER if k in c}


@pytest.mark.parametrize("name", REPORTS)
def test_a_report_is_its_document_without_an_encounter_and_its_header_comes_back(name):
    c = _comp(name)
    assert "-COMPOSITION.report" in c["archetype_node_id"]
    res = to_fhir(c, site="s", ehr_id="e", patient_ref="Patient/1")
    [doc] = [r for r in res.resources if r["resourceType"] == "Composition"]
    assert not [r for r in res.resources if r["resourceType"] == "Encounter"] and "encounter" not in doc
    assert doc["title"] == c["name"]["value"] and doc["date"].startswith(c["context"]["start_time"]["value"][:10])
    made = {f"{r['resourceType']}/{r['id']}" for r in res.resources if r is not doc}
    assert {e["reference"] for s in doc["section"] for e in s["entry"]} == made  # every entry's resource, listed
    assert validate_fhir(doc) == []
    assert not [x for x in res.losses if x.kind == "unmapped-entry"]
    assert compare_clinical(_header(c), _header(to_openehr(res.resources, template_id="t", base_composition=c))) == []
    bare = to_openehr(res.resources, template_id="t")  # no source: the residue carries the header's rest
    assert compare_clinical(_header(c), _header(bare)) == []


def test_a_central_document_under_a_report_template_writes_the_reports_header():
    info = templates.register(next(iter(corpus_files("openehr/templates/kds_diagnosis.opt"))))
    assert info.root_archetype == "openEHR-EHR-COMPOSITION.report.v1"
    cond = load(next(iter(corpus_files("fhir/kds_diagnosis.patient1.bundle.json"))))["entry"][0]["resource"]
    doc = {"resourceType": "Composition", "id": "d1", "status": "final", "type": {"text": "Diagnosis report"},
           "subject": cond["subject"], "date": "2024-03-01T09:00:00+01:00", "title": "Diagnose 1",
           "author": [{"display": "Dr. Central"}],
           "section": [{"entry": [{"reference": f"Condition/{cond['id']}"}]}]}
    out = from_fhir([cond, doc], template_id=info.template_id)
    comp = out.composition
    assert comp["archetype_node_id"] == info.root_archetype
    assert (comp["name"]["value"], comp["composer"]["name"]) == ("Diagnose 1", "Dr. Central")
    assert comp["context"]["start_time"]["value"].startswith("2024-03-01T09:00")
    assert not [x for x in out.losses if x.path == "Composition/d1"]  # read by the document row, not 'unmapped'


def test_a_report_of_nothing_mapped_sends_no_empty_document():
    c = _comp(REPORTS[0])
    for e in c["content"]:
        e["archetype_node_id"] = "openEHR-EHR-EVALUATION.not_mapped_here.v1"
    res = to_fhir(c, site="s", ehr_id="e", patient_ref="Patient/1")
    assert res.resources == [] and [x.kind for x in res.losses] == ["unmapped-entry"] * len(c["content"])


@pytest.mark.integration
@pytest.mark.parametrize("name", REPORTS)
def test_hapi_validates_a_reports_document(fhir_base_url, name):
    res = to_fhir(_comp(name), site="s", ehr_id="e", patient_ref="Patient/1")
    [doc] = [r for r in res.resources if r["resourceType"] == "Composition"]
    assert hapi_errors(fhir_base_url, copy.deepcopy(doc)) == []
