"""Issue 18 rows beyond oncology, both ways: OBSERVATION.body_mass_index.v2 <-> bmi Observation (39156-5),
OBSERVATION.head_circumference.v1 <-> headcircum Observation (9843-4).  Compositions are built from the CKM
archetypes' node ids (tests/fixtures/corpus/openehr/archetypes); codes and profiles are FHIR R4's vital signs
(the bmi and headcircum profiles, their examples: BMI 16.2 kg/m2, head circumference in cm)."""
import copy
import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.mapping import compare_clinical, from_fhir, to_fhir, to_openehr, validate_fhir
from sync.mapping import datatypes as dt
from sync.mapping.engine import entry_skeleton
from sync.mapping.lookup import spec_for_resource
from sync.mapping.residue import strip
from sync.mapping.spec import registry

from .hapi import hapi_errors

# The rows this module proves (sync.mapping.coverage reads it; tests/mapping/test_coverage.py checks it).
COVERS = {"OBSERVATION.body_mass_index.v2": "forward reverse hapi",
          "OBSERVATION.head_circumference.v1": "forward reverse hapi"}

ARGS = dict(site="s", ehr_id="e", patient_ref="Patient/1")
UID = {"_type": "OBJECT_VERSION_ID", "value": "9d0a7c35-0000-4000-8000-000000000018::gen::1"}
LOINC = "http://loinc.org"
VS = "http://hl7.org/fhir/StructureDefinition/"
BMI = "openEHR-EHR-OBSERVATION.body_mass_index.v2"
HEAD = "openEHR-EHR-OBSERVATION.head_circumference.v1"
# archetype -> (LOINC, profile, history name, event node id, data node id, value node, value name, comment node)
VITALS = {BMI: ("39156-5", "bmi", "history", "at0002", "at0003", "at0004", "Body mass index", "at0012"),
          HEAD: ("9843-4", "headcircum", "Event Series", "at0010", "at0003", "at0004", "Head circumference", "at0007")}


def _el(node, name, value=None, **kw):
    out = {"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": name}, "archetype_node_id": node}
    if value is not None:
        out["value"] = value
    return out | kw


def _composition(*entries) -> dict:
    return {"_type": "COMPOSITION", "name": {"_type": "DV_TEXT", "value": "Visit"}, "uid": dict(UID),
            "archetype_node_id": "openEHR-EHR-COMPOSITION.encounter.v1",
            "language": dt.code_phrase("ISO_639-1", "en"), "territory": dt.code_phrase("ISO_3166-1", "DE"),
            "category": dt.coded_text("event", "openehr", "433"), "composer": {"_type": "PARTY_SELF"},
            "content": list(entries)}


def _trip(comp) -> tuple[list[dict], dict]:
    res = to_fhir(comp, **ARGS).resources
    mapped = [r for r in res if r["resourceType"] not in ("Encounter", "Composition")]
    return mapped, to_openehr(mapped, template_id="t")


def _same(comp, back) -> list:
    return compare_clinical({"content": comp["content"]}, {"content": back["content"]})


def _again(composition: dict) -> list[dict]:
    comp = {**copy.deepcopy(composition), "uid": {"value": "aaaaaaaa-0000-4000-8000-000000000018::x::1"}}
    return [r for r in to_fhir(comp, **ARGS).resources if r["resourceType"] not in ("Encounter", "Composition")]


# ------------------------------------------------------------------ vital signs: BMI, head circumference
def _vital(archetype, magnitude=16.2, units=None, *, events=(("at0002", "Any event", "2025-03-14T10:30:00+01:00"),),
           comment=None, null=None, method=None):
    _, _, hist, _, data_id, node, name, comment_node = VITALS[archetype]
    units = units or ("kg/m2" if archetype == BMI else "cm")
    entry = entry_skeleton(registry()[archetype], "en")
    evs = []
    for ev_id, ev_name, time in events:
        items = []
        if null is not None:
            items.append(_el(node, name, null_flavour=dt.coded_text("unknown", "openehr", str(null))))
        elif magnitude is not None:
            items.append(_el(node, name, {"_type": "DV_QUANTITY", "magnitude": magnitude, "units": units,
                                          "precision": 1}))
        if comment:
            items.append(_el(comment_node, "Comment", {"_type": "DV_TEXT", "value": comment}))
        evs.append({"_type": "POINT_EVENT", "name": {"_type": "DV_TEXT", "value": ev_name}, "archetype_node_id": ev_id,
                    "time": {"_type": "DV_DATE_TIME", "value": time},
                    "data": {"_type": "ITEM_TREE", "name": {"_type": "DV_TEXT", "value": "Tree"},
                             "archetype_node_id": data_id, "items": items}})
    entry["data"] = {"_type": "HISTORY", "name": {"_type": "DV_TEXT", "value": hist}, "archetype_node_id": "at0001",
                     "origin": {"_type": "DV_DATE_TIME", "value": events[0][2]}, "events": evs}
    if method:
        entry["protocol"] = {"_type": "ITEM_TREE", "name": {"_type": "DV_TEXT", "value": "Tree"},
                             "archetype_node_id": "at0005", "items": [_el("at0006", "Method", method)]}
    return entry


@pytest.mark.parametrize("archetype", [BMI, HEAD])
def test_a_vital_sign_maps_to_its_r4_profile_and_back_exactly(archetype):
    loinc, profile, *_ = VITALS[archetype]
    comp = _composition(_vital(archetype, 16.2 if archetype == BMI else 51.2, comment="measured twice"))
    [obs], back = _trip(comp)
    assert set(obs["meta"]["profile"]) == {VS + "vitalsigns", VS + profile}
    assert obs["code"]["coding"][0] == {"system": LOINC, "code": loinc, "display": obs["code"]["coding"][0]["display"]}
    assert obs["category"][0]["coding"][0]["code"] == "vital-signs" and obs["status"] == "final"
    assert obs["valueQuantity"]["value"] == (16.2 if archetype == BMI else 51.2)
    assert obs["valueQuantity"]["code"] == ("kg/m2" if archetype == BMI else "cm")
    assert obs["note"] == [{"text": "measured twice"}]
    assert obs["effectiveDateTime"] == "2025-03-14T10:30:00+01:00"
    assert validate_fhir(obs) == []
    assert _same(comp, back) == []
    assert spec_for_resource(strip(obs)).archetype == archetype


def test_a_bmi_in_pounds_per_square_inch_travels_as_written_without_the_kg_m2_profile():
    comp = _composition(_vital(BMI, 0.023, "[lb_av]/[in_i]2"))
    [obs], back = _trip(comp)
    assert "meta" not in obs or not obs["meta"].get("profile")
    assert obs["valueQuantity"]["code"] == "[lb_av]/[in_i]2"
    assert _same(comp, back) == []


def test_a_bmi_method_comes_back():
    comp = _composition(_vital(BMI, method=dt.coded_text("Calculated", "local", "at0008")))
    [obs], back = _trip(comp)
    assert obs["method"]["text"] == "Calculated"
    assert _same(comp, back) == []


def test_head_circumference_at_birth_and_later_are_two_observations():
    comp = _composition(_vital(HEAD, 34.5, events=(("at0011", "Birth", "2024-01-02T08:00:00+01:00"),
                                                   ("at0010", "Any event", "2024-07-02T09:00:00+02:00"))))
    obs, back = _trip(comp)
    assert [o["effectiveDateTime"] for o in obs] == ["2024-01-02T08:00:00+01:00", "2024-07-02T09:00:00+02:00"]
    assert all(o["valueQuantity"] == {"value": 34.5, "unit": "cm", "system": "http://unitsofmeasure.org",
                                      "code": "cm"} for o in obs)
    assert _same(comp, back) == []


@pytest.mark.parametrize("archetype", [BMI, HEAD])
@pytest.mark.parametrize("null,dar", [(None, "not-performed"), (253, "unknown"), (272, "masked")])
def test_no_value_is_a_data_absent_reason_and_comes_back_as_it_was(archetype, null, dar):
    comp = _composition(_vital(archetype, None, null=null))
    [obs], back = _trip(comp)
    assert "valueQuantity" not in obs and obs["dataAbsentReason"]["coding"][0]["code"] == dar
    assert VS + "vitalsigns" in obs["meta"]["profile"]  # vs-2: a value or a reason (bmi itself needs a value)
    assert validate_fhir(obs) == []
    assert _same(comp, back) == []


@pytest.mark.parametrize("archetype", [BMI, HEAD])
def test_the_r4_example_is_read_and_what_the_archetype_has_no_place_for_is_reported(archetype):
    loinc, *_ = VITALS[archetype]
    unit = "kg/m2" if archetype == BMI else "cm"
    born = {"resourceType": "Observation", "id": "v-1", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": loinc}], "text": "BMI"}, "subject": {"reference": "Patient/1"},
            "effectiveDateTime": "1999-07-02", "performer": [{"reference": "Practitioner/p"}],
            "valueQuantity": {"value": 16.2, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}
    out = from_fhir([born], template_id="t")
    [entry] = out.composition["content"]
    assert entry["archetype_node_id"] == archetype
    [el] = [i for i in entry["data"]["events"][0]["data"]["items"] if i["archetype_node_id"] == "at0004"]
    assert el["value"]["magnitude"] == 16.2 and el["value"]["units"] == unit
    lost = {x.path.split(":", 1)[1].split("[")[0] for x in out.losses if x.path.startswith("Observation/v-1:")}
    assert not lost & {"valueQuantity", "effectiveDateTime", "status"}
    [again] = _again(out.composition)
    assert again["valueQuantity"] == born["valueQuantity"] and again["effectiveDateTime"] == "1999-07-02"
    assert "performer" in lost or again.get("performer") == born["performer"]  # reported or kept, never dropped


def test_another_category_contradicts_the_code_and_is_not_claimed():
    obs = {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": LOINC, "code": "39156-5"}]},
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                     "code": "laboratory"}]}]}
    assert spec_for_resource(obs) is None


# ------------------------------------------------------------------ hypothesis
TEXT = st.text(alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Zs")), min_size=1, max_size=12) \
    .map(str.strip).filter(bool)
TIMES = st.datetimes(min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2030, 1, 1)).map(
    lambda d: d.replace(microsecond=0).isoformat() + "+01:00")


@st.composite
def vital_entries(draw):
    archetype = draw(st.sampled_from([BMI, HEAD]))
    units = draw(st.sampled_from(["kg/m2", "[lb_av]/[in_i]2"] if archetype == BMI else ["cm", "[in_i]"]))
    ev_ids = [("at0011", "Birth")] if archetype == HEAD and draw(st.booleans()) else []
    ev_ids += [(VITALS[archetype][3], "Any event")] * draw(st.integers(1, 2))
    events = tuple((i, n, draw(TIMES)) for i, n in ev_ids)
    magnitude = draw(st.one_of(st.none(), st.floats(0.1, 99.9).map(lambda f: round(f, 1))))
    return _vital(archetype, magnitude, units, events=events, comment=draw(st.one_of(st.none(), TEXT)),
                  null=draw(st.sampled_from([None, 253])) if magnitude is None else None)


ENTRIES = [vital_entries()]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_round_trip_property(data):
    comp = _composition(*data.draw(st.lists(st.one_of(*ENTRIES), min_size=1, max_size=3)))
    mapped, back = _trip(comp)
    assert all(validate_fhir(r) == [] for r in mapped)
    assert _same(comp, back) == []
    again = {_node(r): r for r in _again(back)}
    assert {_node(r): compare_clinical(strip(r), strip(again.get(_node(r), {}))) for r in mapped} == \
        {_node(r): [] for r in mapped}


def _node(resource: dict) -> tuple[str, str]:
    """(type, node path of the source identifier): the same node after a trip whatever the entry order."""
    return resource["resourceType"], resource["identifier"][0]["value"].split("|", 2)[2]


# ------------------------------------------------------------------ HAPI $validate, profiles kept
@pytest.mark.integration
def test_hapi_validates_the_vital_signs(fhir_base_url):
    comp = _composition(_vital(BMI, 16.2, comment="x", method=dt.coded_text("Calculated", "local", "at0008")),
                        _vital(BMI, 0.023, "[lb_av]/[in_i]2"), _vital(BMI, None, null=253), _vital(BMI, None),
                        _vital(HEAD, 34.5, events=(("at0011", "Birth", "2024-01-02T08:00:00+01:00"),
                                                   ("at0010", "Any event", "2024-07-02T09:00:00+02:00"))),
                        _vital(HEAD, 13.5, "[in_i]"), _vital(HEAD, None))
    resources, _ = _trip(comp)
    assert len(resources) == 8
    assert {r["id"]: hapi_errors(fhir_base_url, r) for r in resources} == {r["id"]: [] for r in resources}
