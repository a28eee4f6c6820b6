"""COMPOSITION.encounter.v1 + EVENT_CONTEXT <-> Encounter + Composition (composition.py, encounter.v1.yml)."""
import copy
import json
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.mapping import compare_clinical, datatypes as dt, from_fhir, to_fhir, to_openehr, validate_fhir
from sync.mapping.residue import strip

from .conftest import REPO_DIR, corpus_files, load

# The rows this module proves (sync.mapping.coverage reads it; tests/mapping/test_coverage.py checks it).
COVERS = {"COMPOSITION.encounter.v1": "forward reverse hapi"}

FIXTURE = REPO_DIR / "tests" / "fixtures" / "oncology" / "oncology_encounter.composition.json"
HEADER = ("name", "language", "territory", "category", "composer", "context")
UID = "0b5e3c4e-1111-4222-8333-944444444444::site-a::1"


def _comp(path: Path, *, full: bool = False) -> dict:
    """A composition; the oncology fixture keeps only its OBSERVATIONs unless ``full`` (the other rows
    have their own tests: these are about the header and context)."""
    c = load(path)
    c.setdefault("uid", {"_type": "OBJECT_VERSION_ID", "value": UID})
    if path == FIXTURE and not full:
        c["content"] = [e for e in c["content"] if e.get("_type") == "OBSERVATION"]
    return c


def _level(res):
    by = {r["resourceType"]: r for r in res.resources if r["resourceType"] in ("Encounter", "Composition")}
    return by["Encounter"], by["Composition"]


def _header(c):
    return {k: c[k] for k in HEADER if k in c}


def _with_parties(c):
    """The fixture with the participations / facility shapes real compositions use (ips.composition.json)."""
    c = copy.deepcopy(c)
    c["context"]["end_time"] = {"_type": "DV_DATE_TIME", "value": "2025-03-14T11:10:00+01:00"}
    c["context"]["health_care_facility"] = {
        "_type": "PARTY_IDENTIFIED", "name": "Hospital",
        "external_ref": {"_type": "PARTY_REF", "id": {"_type": "GENERIC_ID", "value": "9091", "scheme": "HOSPITAL-NS"},
                         "namespace": "HOSPITAL-NS", "type": "PARTY"}}
    c["context"]["participations"] = [
        {"_type": "PARTICIPATION", "function": {"_type": "DV_TEXT", "value": "requester"},
         "performer": {"_type": "PARTY_IDENTIFIED", "name": "Dr. Marcus Johnson",
                       "external_ref": {"_type": "PARTY_REF", "id": {"_type": "GENERIC_ID", "value": "199",
                                                                     "scheme": "HOSPITAL-NS"},
                                        "namespace": "HOSPITAL-NS", "type": "PERSON"}},
         "mode": dt.coded_text("face-to-face communication", "openehr", "216"),
         "time": {"_type": "DV_INTERVAL", "lower": {"_type": "DV_DATE_TIME", "value": "2025-03-14T10:30:00+01:00"},
                  "lower_unbounded": False, "upper_unbounded": True, "lower_included": True,
                  "upper_included": False}}]
    c["context"]["location"] = "Room 4"
    return c


def test_it_maps_the_fixture_context_to_an_encounter_and_a_document():
    c = _comp(FIXTURE)
    res = to_fhir(c, site="site-a", ehr_id="e", patient_ref="Patient/p1")
    enc, doc = _level(res)
    assert res.resources[-2:] == [enc, doc]  # after the entries' resources
    assert enc["period"] == {"start": "2025-03-14T10:30:00+01:00"} and enc["status"] == "unknown"
    assert enc["class"]["code"] == "AMB"
    assert enc["type"][0]["coding"][0]["code"] == "232" and enc["type"][0]["text"] == "secondary medical care"
    assert enc["serviceProvider"] == {"display": "Synthetic Breast Oncology Clinic"}
    assert doc["encounter"] == {"reference": f"Encounter/{enc['id']}"}
    assert doc["title"] == "ConflictDesk Oncology Encounter" and doc["author"] == [{"display": "Dr. Ada Synthetic"}]
    assert doc["date"] == enc["period"]["start"] and doc["subject"] == {"reference": "Patient/p1"}
    entries = {x["reference"] for s in doc["section"] for x in s["entry"]}
    others = {f"{r['resourceType']}/{r['id']}" for r in res.resources if r not in (enc, doc)}
    assert entries == others  # every resource made from an entry is in a section
    assert enc["identifier"][0]["value"] == f"site-a|{c['uid']['value'].split('::')[0]}|/context"
    assert doc["identifier"]["value"].endswith("|/")
    assert validate_fhir(enc) == [] and validate_fhir(doc) == []


def test_it_maps_parties_participations_and_end_time():
    c = _with_parties(_comp(FIXTURE))
    res = to_fhir(c, site="s", ehr_id="e", patient_ref="Patient/p1")
    enc, doc = _level(res)
    assert enc["status"] == "finished" and enc["period"]["end"] == "2025-03-14T11:10:00+01:00"
    assert enc["serviceProvider"]["display"] == "Hospital"
    assert enc["serviceProvider"]["identifier"]["value"] == "9091"
    part = enc["participant"][0]
    assert part["type"] == [{"text": "requester"}] and part["individual"]["display"] == "Dr. Marcus Johnson"
    assert part["period"] == {"start": "2025-03-14T10:30:00+01:00"}
    # mode and location have no FHIR element: kept in the residue and reported
    assert any(x.path.startswith("/context") and "participations" in x.path for x in res.losses)
    assert any("location" in x.path for x in res.losses)
    assert validate_fhir(enc) == []
    back = to_openehr(res.resources, template_id="t", base_composition=c)
    assert compare_clinical(c, back) == []


@pytest.mark.parametrize("make", [lambda: _comp(FIXTURE), lambda: _with_parties(_comp(FIXTURE))] + [
    (lambda p=p: _comp(p)) for p in corpus_files("openehr/compositions/*.composition.json")
    if load(p).get("archetype_node_id") == "openEHR-EHR-COMPOSITION.encounter.v1"], ids=lambda m: "c")
def test_it_round_trips_the_header_with_and_without_a_base(make):
    c = make()
    res = to_fhir(c, site="s", ehr_id="e", patient_ref="Patient/p1")
    assert compare_clinical(c, to_openehr(res.resources, template_id="t", base_composition=c)) == []
    back = to_openehr(res.resources, template_id="t")
    assert compare_clinical(_header(c), _header(back)) == []
    assert back["uid"]["value"] == c["uid"]["value"].split("::")[0]


def test_a_composer_party_self_is_the_patient():
    c = _comp(FIXTURE)
    c["composer"] = {"_type": "PARTY_SELF"}
    res = to_fhir(c, site="s", ehr_id="e", patient_ref="Patient/p9")
    _, doc = _level(res)
    assert doc["author"] == [{"reference": "Patient/p9"}]
    assert to_openehr(res.resources, template_id="t")["composer"] == {"_type": "PARTY_SELF"}


def test_an_edited_fhir_period_wins_over_the_residue():
    c = _comp(FIXTURE)
    c["context"]["start_time"]["value"] = "2025-03-14T10:30:00"  # naive: exact form kept in the residue
    res = to_fhir(c, site="s", ehr_id="e", patient_ref="Patient/p1")
    enc, _ = _level(res)
    assert enc["period"]["start"] == "2025-03-14T10:30:00Z"
    enc["period"]["start"] = "2025-03-15T09:00:00+01:00"
    out = from_fhir(res.resources, template_id="t", base_composition=c)
    assert out.composition["context"]["start_time"]["value"] == "2025-03-15T09:00:00+01:00"
    assert any(x.kind == "stale" for x in out.losses)


FHIR_FILES = ["encounter_tumor_f202.json", "kds_encounter_case.patient3.bundle.json"]


@pytest.mark.parametrize("name", FHIR_FILES)
def test_corpus_encounters_go_fhir_openehr_fhir(corpus, name):
    doc = load(corpus / "fhir" / name)
    resources = [e["resource"] for e in doc["entry"]] if doc["resourceType"] == "Bundle" else [doc]
    orig = next(r for r in resources if r["resourceType"] == "Encounter")
    out = from_fhir(resources, template_id="t")
    comp = out.composition
    assert comp["archetype_node_id"] == "openEHR-EHR-COMPOSITION.encounter.v1"
    comp["uid"] = {"value": "aaaaaaaa-0000-4000-8000-000000000001::x::1"}
    fwd = to_fhir(comp, site="s", ehr_id="e", patient_ref=orig["subject"]["reference"])
    enc, doc2 = _level(fwd)
    assert validate_fhir(enc) == [] and validate_fhir(doc2) == []
    lost = {x.path.split(":", 1)[1] for x in out.losses if x.path.startswith(f"Encounter/{orig['id']}:")}
    for d in compare_clinical(orig, strip(enc)):
        if d["kind"] in ("dictionary_item_added", "iterable_item_added"):
            continue
        element = d["path"].replace("root['", "").split("'")[0]
        if element == "subject":
            continue  # the subject comes from the caller's patient reference
        assert any(x == element or x.startswith(element) for x in lost), (name, d["path"])
    # what must survive: period, serviceProvider and participants
    for key in ("period", "serviceProvider", "participant"):
        if key in orig:
            assert key not in {x.split(".")[0].split("[")[0] for x in lost}, key
    assert "status" not in lost or "period" not in orig  # finished is derived back from the end time


# ------------------------------------------------------------------ properties
_times = st.datetimes(min_value=__import__("datetime").datetime(2000, 1, 1),
                      max_value=__import__("datetime").datetime(2040, 1, 1)).map(
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%S") + "+01:00")
_names = st.text(st.characters(whitelist_categories=("L", "N"), max_codepoint=0x24F), min_size=1, max_size=20)
SETTINGS = [(n, "openehr", c) for n, c in [("home", "225"), ("emergency care", "227"), ("primary medical care", "228"),
                                          ("secondary medical care", "232"), ("dental care", "236"),
                                          ("other care", "238")]]


@st.composite
def encounter_composition(draw):
    c = copy.deepcopy(load(FIXTURE))
    c["uid"] = {"_type": "OBJECT_VERSION_ID", "value": UID}
    c["content"] = draw(st.sampled_from([[], c["content"][:1]]))
    c["name"]["value"] = draw(_names)
    c["composer"] = draw(st.one_of(st.just({"_type": "PARTY_SELF"}),
                                   _names.map(lambda n: {"_type": "PARTY_IDENTIFIED", "name": n})))
    ctx = {"_type": "EVENT_CONTEXT", "start_time": {"_type": "DV_DATE_TIME", "value": draw(_times)},
           "setting": dt.coded_text(*draw(st.sampled_from(SETTINGS)))}
    if draw(st.booleans()):
        ctx["end_time"] = {"_type": "DV_DATE_TIME", "value": draw(_times)}
    if draw(st.booleans()):
        ctx["health_care_facility"] = {"_type": "PARTY_IDENTIFIED", "name": draw(_names)}
    if draw(st.booleans()):
        ctx["participations"] = [{"_type": "PARTICIPATION", "function": {"_type": "DV_TEXT", "value": draw(_names)},
                                  "performer": {"_type": "PARTY_IDENTIFIED", "name": draw(_names)}}]
    c["context"] = ctx
    return c


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(encounter_composition())
def test_generated_encounters_round_trip(c):
    res = to_fhir(c, site="s", ehr_id="e", patient_ref="Patient/1")
    enc, doc = _level(res)
    assert validate_fhir(enc) == [] and validate_fhir(doc) == []
    assert compare_clinical(c, to_openehr(res.resources, template_id="t", base_composition=c)) == []
    back = to_openehr(res.resources, template_id="t")
    assert compare_clinical(_header(c), _header(back)) == []
    again = to_fhir({**back, "uid": c["uid"]}, site="s", ehr_id="e", patient_ref="Patient/1")
    assert [compare_clinical(a, b) for a, b in zip(_level(res), _level(again))] == [[], []]


# ------------------------------------------------------------------ HAPI
def _errors(base: str, resource: dict) -> list[str]:
    r = httpx.post(f"{base}/{resource['resourceType']}/$validate", json=resource,
                   headers={"Content-Type": "application/fhir+json"}, timeout=60)
    return [json.dumps(i)[:300] for i in r.json().get("issue", []) if i.get("severity") in ("error", "fatal")]


@pytest.mark.integration
def test_hapi_validates_encounter_and_composition(fhir_base_url, corpus):
    comps = [_comp(FIXTURE), _with_parties(_comp(FIXTURE)),
             _comp(corpus / "openehr" / "compositions" / "encounter_body_temperature_multi.composition.json")]
    for name in FHIR_FILES:
        doc = load(corpus / "fhir" / name)
        resources = [e["resource"] for e in doc["entry"]] if doc["resourceType"] == "Bundle" else [doc]
        comp = from_fhir(resources, template_id="t").composition
        comp["uid"] = {"value": "aaaaaaaa-0000-4000-8000-000000000001::x::1"}
        comps.append(comp)
    for c in comps:
        for r in _level(to_fhir(c, site="s", ehr_id="e", patient_ref="Patient/p1")):
            assert _errors(fhir_base_url, r) == [], r["resourceType"]
