"""FLAT -> canonical (sync/mapping/flat.py) on the corpus FLAT files, no server.

What EHRbase produces from the same files is checked in tests/integration/test_flat_vs_ehrbase.py;
here: structure, sibling indices, data types, defaults, and errors that name keys, never values.
"""
from __future__ import annotations

import json

import pytest

from sync.mapping import flat, webtemplate
from tests.fixtures import OPENEHR_CORPUS, REPO_DIR

COMPOSITIONS = OPENEHR_CORPUS / "compositions"
TEMPLATES = OPENEHR_CORPUS / "templates"
NOW = "2025-01-01T00:00:00.000Z"


def load(stem: str) -> tuple[dict, object]:
    return json.loads((COMPOSITIONS / f"{stem}.flat.json").read_text(encoding="utf-8-sig")), TEMPLATES / f"{stem}.opt"


def entries(comp: dict) -> list[dict]:
    out = []
    for item in comp.get("content", []):
        out += [item] if item["_type"] != "SECTION" else entries({"content": item.get("items", [])})
    return out


def test_vital_signs_structure_and_quantities():
    doc, opt = load("vital_signs_ehrn")
    comp = flat.to_canonical(doc, opt, now=NOW)
    assert comp["_type"] == "COMPOSITION"
    assert comp["archetype_details"]["template_id"]["value"] == "EHRN Vital signs.v2"
    assert comp["language"]["code_string"] == "fr" and comp["territory"]["code_string"] == "FR"
    assert comp["composer"] == {"_type": "PARTY_IDENTIFIED", "name": "Renaud Subiger"}
    section = comp["content"][0]
    assert section["_type"] == "SECTION" and section["archetype_node_id"] == "openEHR-EHR-SECTION.vital_signs.v1"
    bp = section["items"][0]
    assert bp["archetype_node_id"] == "openEHR-EHR-OBSERVATION.blood_pressure.v2"
    assert bp["language"]["code_string"] == "de"  # the entry's own, not the composition's
    assert bp["encoding"]["code_string"] == "UTF-8" and bp["subject"] == {"_type": "PARTY_SELF"}
    event = bp["data"]["events"][0]
    assert "_type" not in bp["data"]  # HISTORY is written without _type, as EHRbase does
    assert bp["data"]["origin"]["value"] == event["time"]["value"] == "2021-03-21T21:19:49.293785+01:00"
    systolic = event["data"]["items"][0]
    assert systolic["archetype_node_id"] == "at0004"
    assert systolic["value"] == {"_type": "DV_QUANTITY", "units": "mm[Hg]", "magnitude": 120.0}


def test_sibling_indices_and_other_text():
    doc, opt = load("encounter_body_temperature_multi")
    comp = flat.to_canonical(doc, opt, now=NOW)
    temps = [e for e in comp["content"] if e["archetype_node_id"] == "openEHR-EHR-OBSERVATION.body_temperature.v2"]
    assert len(temps) == 2  # body_temperature:0 and :1
    assert [len(t["data"]["events"]) for t in temps] == [2, 2]  # any_event:0 and :1 in each
    magnitudes = [i["value"]["magnitude"] for e in temps[0]["data"]["events"] for i in e["data"]["items"]
                  if i["value"]["_type"] == "DV_QUANTITY"]
    assert magnitudes == [22.0, 11.0] and all(isinstance(m, float) for m in magnitudes)
    counts = [i["value"] for e in temps[0]["data"]["events"] for part in ("data", "state")
              for i in e.get(part, {}).get("items", []) if i["value"]["_type"] == "DV_COUNT"]
    assert counts == [{"_type": "DV_COUNT", "magnitude": 3}] * 2
    sites = [i["value"] for t in temps for i in t.get("protocol", {}).get("items", [])]
    assert sites[0]["_type"] == "DV_CODED_TEXT" and sites[0]["defining_code"]["code_string"] == "at0061"
    assert sites[1] == {"_type": "DV_TEXT", "value": "location"}  # '|other' makes a coded element plain text
    assert comp["context"]["end_time"]["value"] == "2020-10-06T13:30:34.317875+02:00"  # '_end_time'


def test_instruction_action_and_uids():
    doc, opt = load("covid_management_health_risk")
    comp = flat.to_canonical(doc, opt, now=NOW)
    by_type = {e["_type"]: e for e in entries(comp)}
    request = next(e for e in entries(comp) if e["name"]["value"] == "Isolation request")
    activity = request["activities"][0]
    assert activity["timing"] == {"_type": "DV_PARSABLE", "value": "R3/2020-11-13T16:00:00Z/P2M", "formalism": "timing"}
    assert activity["action_archetype_id"] == "/.*/"
    assert request["narrative"] == {"_type": "DV_TEXT", "value": "Human readable instruction narrative"}
    assert request["uid"] == {"_type": "HIER_OBJECT_ID", "value": "9f1244d2-5b1b-461d-bac1-98ccb828d7c0"}
    durations = [i for c in activity["description"]["items"] if c["_type"] == "CLUSTER" for i in c["items"]]
    assert durations[0]["value"] == {"_type": "DV_DURATION", "value": "P12D"}
    action = by_type["ACTION"]
    ism = action["ism_transition"]
    assert ism["current_state"]["defining_code"] == {"_type": "CODE_PHRASE", "terminology_id": {
        "_type": "TERMINOLOGY_ID", "value": "openehr"}, "code_string": "526"}
    assert ism["careflow_step"]["value"] == "Service request sent"
    assert comp["context"]["setting"]["value"] == "other care"


def test_ctx_defaults_ordinals_proportions_and_interval_events():
    doc, opt = load("news2_encounter_vitals")
    comp = flat.to_canonical(doc, opt, now=NOW)
    assert comp["language"]["code_string"] == "en" and comp["territory"]["code_string"] == "SI"  # ctx/...
    assert comp["composer"]["name"] == "Silvia Blake"
    ctx = comp["context"]
    assert ctx["start_time"]["value"] == NOW  # no ctx/time: 'now', as EHRbase
    assert ctx["health_care_facility"]["name"] == "Hospital"
    parts = ctx["participations"]
    assert [p["function"]["value"] for p in parts] == ["requester", "performer"]
    assert parts[0]["mode"]["defining_code"]["code_string"] == "216"
    assert parts[0]["performer"]["external_ref"]["id"] == {"_type": "GENERIC_ID", "value": "199", "scheme": "HOSPITAL-NS"}
    obs = {e["archetype_node_id"]: e for e in entries(comp)}
    news = obs["openEHR-EHR-OBSERVATION.news2.v1"]
    ordinals = [i["value"] for i in news["data"]["events"][0]["data"]["items"] if i["value"]["_type"] == "DV_ORDINAL"]
    assert ordinals[0]["value"] == 3 and ordinals[0]["symbol"]["defining_code"]["code_string"] == "at0064"
    spo = obs["openEHR-EHR-OBSERVATION.pulse_oximetry.v1"]["data"]["events"][0]["data"]["items"][0]["value"]
    assert spo == {"_type": "DV_PROPORTION", "numerator": 37.6, "denominator": 100.0, "type": 2}
    events = obs["openEHR-EHR-OBSERVATION.blood_pressure.v2"]["data"]["events"]
    interval = next(e for e in events if e["_type"] == "INTERVAL_EVENT")
    assert interval["math_function"]["defining_code"]["code_string"] == "146"
    assert interval["width"] == {"_type": "DV_DURATION", "value": "P1DT3H15M"}


def test_ehrbases_canonical_of_our_oncology_flat_fixture_is_ours():
    doc = json.loads((REPO_DIR / "tests/fixtures/oncology/oncology_encounter.flat.json").read_text())
    theirs = json.loads((REPO_DIR / "tests/fixtures/oncology/oncology_encounter.composition.json").read_text())
    ours = flat.to_canonical(doc, REPO_DIR / "deploy/templates/conflictdesk_oncology.v1.opt", now=NOW)
    theirs.pop("uid", None)
    ours.pop("uid", None)
    assert ours == theirs


def test_unconsumable_keys_are_named_and_values_are_not():
    doc, opt = load("kds_procedure")
    with pytest.raises(flat.FlatError) as err:
        flat.to_canonical(doc, opt, now=NOW)
    assert err.value.keys == ["kds_prozedur/prozedur:0/körperstelle:0|code",
                              "kds_prozedur/prozedur:0/körperstelle:0|terminology",
                              "kds_prozedur/prozedur:0/körperstelle:0|value"]
    for key in err.value.keys:
        assert str(doc[key]) not in str(err.value)


def test_keys_of_another_template_and_no_template():
    doc, opt = load("vital_signs_ehrn")
    with pytest.raises(flat.FlatError, match="outside web template"):
        flat.to_canonical(doc, TEMPLATES / "covid_management_health_risk.opt")
    with pytest.raises(flat.FlatError, match="operational template"):
        flat.to_canonical(doc, template_id="not registered")


def test_registered_template_is_found_by_root_id(monkeypatch):
    monkeypatch.setattr(flat, "_REGISTERED", {})  # the registry is process-wide: leave it as found
    doc, opt = load("vital_signs_ehrn")
    wt = flat.register(opt)
    assert flat.template_for(doc) is wt
    assert flat.to_canonical(doc, now=NOW) == flat.to_canonical(doc, opt, now=NOW)


def test_is_flat():
    doc, _ = load("vital_signs_ehrn")
    assert flat.is_flat(doc)
    assert not flat.is_flat({"_type": "COMPOSITION"}) and not flat.is_flat({"resourceType": "Bundle"})


def test_web_template_ids_and_paths():
    wt = webtemplate.build((TEMPLATES / "vital_signs_ehrn.opt").read_text(encoding="utf-8-sig"))
    tree = webtemplate.filtered(wt)
    assert tree.flat_id == "ehrn_vital_signs.v2"
    bp = webtemplate.find_by_flat_path(tree, ["vital_signs", "blood_pressure", "any_event", "systolic"])
    assert bp is not None and bp.rm_type == "DV_QUANTITY" and bp.node_id == "at0004"
    assert bp.aql_path.endswith("/data[at0001]/events[at0006]/data[at0003]/items[at0004]/value")
    assert webtemplate.build_id("24 hour average") == "a24_hour_average"
    assert webtemplate.build_id("SpO₂") == "spo"
    assert webtemplate.build_id("Zeitablauf - täglich") == "zeitablauf_-_täglich"
