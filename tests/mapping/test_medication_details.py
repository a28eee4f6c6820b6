"""CLUSTER.medication.v2 (medication details, in a medication use statement's or a medication ACTION's slot) <->
a Medication of its own named by medicationReference (issue 18): the MII KDS compositions' clusters, both ways,
a statement without a cluster or with a medication name unchanged, a FHIR-born same-bundle Medication still
read as the medication name, hypothesis round trip, HAPI $validate."""
import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.mapping import compare_clinical, from_fhir, rmpath, to_fhir, to_openehr, validate_fhir
from sync.mapping import datatypes as dt
from sync.workflow.deletion import is_retired, retired

from .conftest import CORPUS, load
from .hapi import hapi_errors
from .test_dosage import _cl, _el, statement

# The rows this module proves (sync.mapping.coverage reads it; tests/mapping/test_coverage.py checks it).
COVERS = {"CLUSTER.medication.v2": "forward reverse hapi"}

KDS_COMPOSITION = CORPUS / "openehr" / "compositions" / "kds_medication_statement.patient1.composition.json"
KDS_BUNDLE = CORPUS / "fhir" / "kds_medication_statement.patient1.bundle.json"
KDS_ADMINISTRATION = CORPUS / "openehr" / "compositions" / "kds_medication_administration.patient1.composition.json"
UID = "0b5e3c4e-1111-4222-8333-944444444444::t::1"
ARGS = dict(site="s", ehr_id="e", patient_ref="Patient/1")
MED = "openEHR-EHR-CLUSTER.medication.v2"
STATEMENT = "openEHR-EHR-OBSERVATION.medication_statement.v0"
ACTION = "openEHR-EHR-ACTION.medication.v1"


def _kds():
    return load(KDS_COMPOSITION) | {"uid": {"_type": "OBJECT_VERSION_ID", "value": UID}}


def _of(resources, rt):
    return [r for r in resources if r["resourceType"] == rt]


def _medication_cluster(*items):
    return _cl(MED, "Medication details", list(items))


def _statement_with(*items):
    comp = statement()
    comp["content"][0]["data"]["events"][0]["data"]["items"] = list(items)
    return comp


def _clusters(comp):
    return [i for _, e in rmpath.entries(comp) if e.get("archetype_node_id") == STATEMENT
            for ev in e["data"]["events"] for i in ev["data"]["items"] if i.get("archetype_node_id") == MED]


def test_the_kds_cluster_is_a_medication_named_by_the_statement():
    res = to_fhir(_kds(), **ARGS).resources
    [ms], [med] = _of(res, "MedicationStatement"), _of(res, "Medication")
    assert ms["medicationReference"] == {"reference": f"Medication/{med['id']}"}
    assert validate_fhir(med) == [] and validate_fhir(ms) == []
    assert {c["code"] for c in med["code"]["coding"]} >= {"06312077"} and med["form"]["coding"][0]["code"] == "10219000"
    back = to_openehr(res, template_id="t")
    assert compare_clinical({"content": _clusters(_kds())}, {"content": _clusters(back)}) == []


def test_the_statement_and_its_medication_come_back_as_the_cluster():
    res = to_fhir(_kds(), **ARGS).resources
    out = from_fhir(res, template_id="t")
    [cluster] = _clusters(out.composition)
    assert compare_clinical({"c": [cluster]}, {"c": _clusters(_kds())}) == []
    assert not any(i.get("archetype_node_id") == "at0006"
                   for ev in rmpath.entries(out.composition)[0][1]["data"]["events"] for i in ev["data"]["items"])


def _action_clusters(comp):
    return [i for _, e in rmpath.entries(comp) if e.get("archetype_node_id") == ACTION
            for i in e["description"]["items"] if i.get("archetype_node_id") == MED]


def test_an_administration_names_its_medication_cluster_and_gets_it_back():
    comp = load(KDS_ADMINISTRATION) | {"uid": {"_type": "OBJECT_VERSION_ID", "value": UID}}
    res = to_fhir(comp, **ARGS).resources
    [ma], [med] = _of(res, "MedicationAdministration"), _of(res, "Medication")
    assert ma["medicationReference"] == {"reference": f"Medication/{med['id']}"} and validate_fhir(med) == []
    back = from_fhir(res, template_id="t").composition
    assert _action_clusters(back) and compare_clinical({"c": _action_clusters(comp)}, {"c": _action_clusters(back)}) == []
    assert compare_clinical(comp, to_openehr(res, template_id="t", base_composition=comp)) == []


def test_a_statement_with_a_medication_name_keeps_the_codeable_concept():
    name = _el("at0006", "Medication name", dt.coded_text("Aspirin", "http://www.whocc.no/atc", "B01AC06"))
    comp = _statement_with(name, _medication_cluster(_el("at0132", "Name", {"_type": "DV_TEXT", "value": "ASS"})))
    res = to_fhir(comp, **ARGS).resources
    [ms] = _of(res, "MedicationStatement")
    assert _of(res, "Medication") == [] and ms["medicationCodeableConcept"]["coding"][0]["code"] == "B01AC06"
    assert compare_clinical({"content": comp["content"]}, {"content": to_openehr(res, template_id="t")["content"]}) == []


def test_a_statement_without_a_cluster_emits_what_it_did():
    name = _el("at0006", "Medication name", {"_type": "DV_TEXT", "value": "Paracetamol"})
    [ms] = _of(to_fhir(_statement_with(name), **ARGS).resources, "MedicationStatement")
    assert ms["medicationCodeableConcept"] == {"text": "Paracetamol"} and "medicationReference" not in ms


def test_a_fhir_born_same_bundle_medication_is_still_read_as_the_medication_name():
    resources = [e["resource"] for e in load(KDS_BUNDLE)["entry"]]
    out = from_fhir(resources, template_id="t")
    assert _clusters(out.composition) == []
    [entry] = [e for _, e in rmpath.entries(out.composition) if e.get("archetype_node_id") == STATEMENT]
    [name] = [i for i in entry["data"]["events"][0]["data"]["items"] if i.get("archetype_node_id") == "at0006"]
    assert name["value"]["defining_code"]["code_string"] in ("06312077", "B01AC06")


@st.composite
def medication_clusters(draw):
    text = st.text(st.characters(min_codepoint=65, max_codepoint=122, blacklist_characters="\\`^[]_"),
                   min_size=1, max_size=12)
    items = [_el("at0132", "Name", draw(st.sampled_from([
        {"_type": "DV_TEXT", "value": draw(text)}, dt.coded_text("Cisplatin", "http://www.whocc.no/atc", "L01XA01")])))]
    if draw(st.booleans()):
        items.append(_el("at0071", "Form", dt.coded_text("Tablet", "http://standardterms.edqm.eu", "10219000")))
    if draw(st.booleans()):
        items.append(_el("at0150", "Batch ID", {"_type": "DV_TEXT", "value": draw(text)}))
    if draw(st.booleans()):
        items.append(_el("at0003", "Expiry", {"_type": "DV_DATE_TIME", "value": "2027-01-31T00:00:00Z"}))
    if draw(st.booleans()):
        items.append(_el("at0133", "Description", {"_type": "DV_TEXT", "value": draw(text)}))  # residue
    return _statement_with(_medication_cluster(*items))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(medication_clusters())
def test_generated_medication_clusters_round_trip(comp):
    res = to_fhir(comp, **ARGS).resources
    [med] = _of(res, "Medication")
    assert validate_fhir(med) == []
    back = to_openehr(res, template_id="t")
    assert compare_clinical({"content": comp["content"]}, {"content": back["content"]}) == []
    again = to_fhir({**copy.deepcopy(back), "uid": comp["uid"]}, **ARGS).resources
    assert compare_clinical(med, _of(again, "Medication")[0]) == []


def test_hapi_validates_the_medication_and_its_statement(fhir_base_url):
    admin = load(KDS_ADMINISTRATION) | {"uid": {"_type": "OBJECT_VERSION_ID", "value": UID}}
    res = _of(to_fhir(_kds(), **ARGS).resources + to_fhir(admin, **ARGS).resources, "Medication") + _of(
        to_fhir(_statement_with(_medication_cluster(
            _el("at0132", "Name", dt.coded_text("Cisplatin", "http://www.whocc.no/atc", "L01XA01")),
            _el("at0150", "Batch ID", {"_type": "DV_TEXT", "value": "B123"}),
            _el("at0003", "Expiry", {"_type": "DV_DATE_TIME", "value": "2027-01-31T00:00:00Z"}))), **ARGS).resources,
        "Medication")
    assert {r["id"]: hapi_errors(fhir_base_url, r) for r in res} == {r["id"]: [] for r in res}


def test_a_deleted_statement_retires_its_medication_too():
    [med] = _of(to_fhir(_kds(), **ARGS).resources, "Medication")
    marked = retired(med)
    assert marked["status"] == "entered-in-error" and is_retired(marked) and validate_fhir(marked) == []
