"""Every corpus canonical composition with a mapped archetype converts, validates and round-trips."""
import copy

import pytest

from sync.mapping import build_provenance, compare_clinical, rmpath, to_fhir, to_openehr, validate_fhir
from sync.mapping.convert import patient_element
from sync.mapping.spec import registry

from .conftest import corpus_files, load

COMPOSITIONS = [p for p in corpus_files("openehr/compositions/*.composition.json")]
MAPPED = [p for p in COMPOSITIONS
          if any(e.get("archetype_node_id") in registry() for _, e in rmpath.entries(load(p)))]


def _comp(path):
    c = load(path)
    c.setdefault("uid", {"_type": "OBJECT_VERSION_ID", "value": "0b5e3c4e-1111-4222-8333-944444444444::test::1"})
    return c


def _mapped_entries(c):
    return [e for _, e in rmpath.entries(c) if e.get("archetype_node_id") in registry()]


def test_the_corpus_has_mapped_compositions():
    names = {p.name for p in MAPPED}
    assert {"encounter_body_temperature_multi.composition.json", "kds_lab_report.patient1.composition.json",
            "lab_blood_gas.composition.json", "ips.composition.json"} <= names


@pytest.mark.parametrize("path", MAPPED, ids=lambda p: p.name)
def test_it_converts_and_validates(path):
    c = _comp(path)
    res = to_fhir(c, site="site-a", ehr_id="ehr-1", patient_ref="Patient/p1")
    assert res.resources
    vo = c["uid"]["value"].split("::")[0]
    for r in res.resources:
        assert validate_fhir(r) == [], r["resourceType"]
        idents = r["identifier"] if isinstance(r["identifier"], list) else [r["identifier"]]  # Composition: 0..1
        ident = [i for i in idents if i["system"] == "urn:conflictdesk:source"]
        where = {"Encounter": "/context", "Composition": "/", "List": "/"}.get(r["resourceType"], "/content[")
        assert ident and ident[0]["value"].startswith(f"site-a|{vo}|{where}")
        where_patient = patient_element(r["resourceType"])  # a Medication names no patient
        assert where_patient is None or r[where_patient] == {"reference": "Patient/p1"}
    assert len({r["id"] for r in res.resources}) == len(res.resources)
    prov = build_provenance(res.resources, "site-a", "ehr-1", c["uid"]["value"])
    assert validate_fhir(prov) == [] and len(prov["target"]) == len(res.resources)


@pytest.mark.parametrize("path", MAPPED, ids=lambda p: p.name)
def test_it_round_trips_into_the_source_composition(path):
    c = _comp(path)
    res = to_fhir(c, site="site-a", ehr_id="ehr-1", patient_ref="Patient/p1")
    back = to_openehr(res.resources, template_id="t", base_composition=c)
    assert compare_clinical(c, back) == []


@pytest.mark.parametrize("path", MAPPED, ids=lambda p: p.name)
def test_it_rebuilds_mapped_entries_from_the_resources_alone(path):
    """No base: every mapped entry must come out of the FHIR resources (not be copied from a base)."""
    c = _comp(path)
    res = to_fhir(c, site="site-a", ehr_id="ehr-1", patient_ref="Patient/p1")
    back = to_openehr(res.resources, template_id="t")
    assert compare_clinical({"content": _mapped_entries(c)}, {"content": back["content"]}) == []
    stripped = copy.deepcopy(c)
    stripped["content"] = [x for x in stripped["content"] if x.get("archetype_node_id") not in registry()]
    for sec in stripped["content"]:
        if "items" in sec:
            sec["items"] = [x for x in sec["items"] if x.get("archetype_node_id") not in registry()]
    again = to_openehr(res.resources, template_id="t", base_composition=stripped)
    assert compare_clinical(c, again) == []


def test_it_splits_history_events_into_observations():
    c = _comp(next(p for p in MAPPED if p.name.startswith("encounter_body_temperature")))
    res = to_fhir(c, site="s", ehr_id="e", patient_ref="Patient/1")
    obs = [r for r in res.resources if r["resourceType"] == "Observation"]  # + Encounter, Composition
    assert [r["valueQuantity"]["value"] for r in obs] == [22.0, 11.0, 22.0, 11.0]
    assert all(r["code"]["coding"][0]["code"] == "8310-5" for r in obs)
    assert all("http://hl7.org/fhir/StructureDefinition/vitalsigns" in r["meta"]["profile"] for r in obs)
    assert all(r["valueQuantity"]["code"] == "Cel" for r in obs)
    # state (body exposure) has no FHIR element: reported, not silently dropped
    assert any("state[at0029]/items[at0030]" in loss.path for loss in res.losses)


def test_it_groups_lab_analytes_under_a_report():
    c = _comp(next(p for p in MAPPED if p.name.startswith("kds_lab_report")))
    res = to_fhir(c, site="s", ehr_id="e", patient_ref="Patient/1")
    reports = [r for r in res.resources if r["resourceType"] == "DiagnosticReport"]
    obs = [r for r in res.resources if r["resourceType"] == "Observation"]
    assert len(reports) == 1 and len(obs) == 6
    assert {f"Observation/{o['id']}" for o in obs} == {x["reference"] for x in reports[0]["result"]}
    assert all(o["status"] == "final" for o in obs)  # at0018
    assert all(o["category"][0]["coding"][0]["code"] == "laboratory" for o in obs)
    absent = [o for o in obs if "dataAbsentReason" in o]
    assert len(absent) == 1 and absent[0]["dataAbsentReason"]["coding"][0]["code"] == "unknown"  # 253


def test_it_sends_a_single_analyte_as_an_observation_only():
    c = _comp(next(p for p in MAPPED if p.name.startswith("lab_laborbefund")))
    res = to_fhir(c, site="s", ehr_id="e", patient_ref="Patient/1")
    # and the report's document header (COMPOSITION.report-result.v1: no Encounter)
    assert [r["resourceType"] for r in res.resources] == ["Observation", "Composition"]
    assert res.resources[0]["valueQuantity"]["value"] == 72.0 and "encounter" not in res.resources[1]


def test_it_reports_unmapped_entries():
    c = _comp(next(p for p in MAPPED if p.name.startswith("ips")))
    res = to_fhir(c, site="s", ehr_id="e", patient_ref="Patient/1")
    assert any(x.kind == "unmapped-entry" and "exclusion_global" in x.path for x in res.losses)
