"""FHIR corpus vitals and lab examples: FHIR -> openEHR -> FHIR keeps every clinical value.

What does not survive must be reported as a loss, and the loss list may only name elements we
document as out of scope (performer, basedOn, referenceRange, ...): the values, units, codes
of components, times and statuses must come back equal."""
import copy
import re

import pytest

from sync.mapping import compare_clinical, feeder, from_fhir, to_fhir, validate_fhir
from sync.mapping.residue import strip

from .conftest import corpus_files, load

FILES = [p for p in corpus_files("fhir/*.json")
         if re.match(r"(observation_(vitals|lab)_|kds_lab_report|news2_vitals)", p.name)
         and p.name != "observation_vitals_panel.json"]
# elements a reader may find in losses; anything else lost is a defect
ALLOWED = {"identifier", "performer", "basedOn", "encounter", "referenceRange", "specimen", "device", "meta",
           "bodySite", "interpretation", "hasMember", "derivedFrom", "note", "category", "code", "effectivePeriod",
           "dataAbsentReason", "method", "valueQuantity", "component", "subject"}
MUST_KEEP = re.compile(r"(value(Quantity)?\.(value|code|system)$|component\[\d+\]\.value|effectiveDateTime|^status$)")
# a Specimen may lose only these (MII biobank extensions, availability status, SNOMED edition of codings,
# container additive and specimen quantity): its type, identifiers, collection and container type come back
SPECIMEN_ALLOWED = re.compile(r"^(meta|extension|status|((type|collection\.(bodySite|method)|container\[\d+\]\.type)"
                              r"\.coding\[\d+\]\.version)|container\[\d+\]\.(additiveReference|specimenQuantity))$")


def _resources(doc):
    return [e["resource"] for e in doc["entry"]] if doc["resourceType"] == "Bundle" else [doc]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_it_round_trips_fhir_through_openehr(path):
    resources = _resources(load(path))
    out = from_fhir(resources, template_id="t")
    comp = copy.deepcopy(out.composition)
    comp["uid"] = {"value": "aaaaaaaa-0000-4000-8000-000000000001::x::1"}
    by_ref = {f"{r['resourceType']}/{r['id']}": r for r in resources}
    for loss in out.losses:
        if loss.kind in ("unmapped-entry", "unmapped-resource") or loss.path.startswith(("Encounter/", "Composition/")):
            continue  # composition-level resources: tests/mapping/test_encounter.py
        element = loss.path.split(":", 1)[1] if ":" in loss.path else ""
        if loss.path.startswith("Specimen/"):
            assert SPECIMEN_ALLOWED.match(element), str(loss)
            continue
        assert element.split(".")[0].split("[")[0] in ALLOWED, str(loss)
        assert not MUST_KEEP.search(element), f"clinical value lost: {loss}"
    by_id = {f"{r['resourceType']}/{r['id']}": r for r in resources}
    side = feeder.side_copies(comp)  # kept by reference (NEWS2's derivedFrom 'Breathing room air'): no entry of its own
    for ref, kept in side.items():
        assert kept == by_ref[ref], ref
    mapped = [r for r in resources if not any(x.path == f"{r['resourceType']}/{r['id']}" for x in out.losses)
              and r["resourceType"] in ("Observation", "DiagnosticReport", "Specimen")
              and f"{r['resourceType']}/{r['id']}" not in side]
    subject = next((r["subject"]["reference"] for r in mapped if "subject" in r), "Patient/x")
    fwd = to_fhir(comp, site="s", ehr_id="e", patient_ref=subject)
    fwd.resources = [r for r in fwd.resources if r["resourceType"] not in ("Encounter", "Composition")]
    assert len(fwd.resources) == len(mapped)
    for r in fwd.resources:
        assert validate_fhir(r) == []
    # every value that was not reported lost is equal after the trip
    for orig in mapped:
        twin = next(r for r in fwd.resources if r["resourceType"] == orig["resourceType"]
                    and ("code" not in orig or r.get("code", {}).get("coding", [{}])[0].get("code") in
                         [c.get("code") for c in orig.get("code", {}).get("coding", [])]))
        lost = {x.path.split(":", 1)[1] for x in out.losses if x.path.startswith(f"{orig['resourceType']}/"
                                                                                  f"{orig['id']}:")}
        for d in compare_clinical(orig, strip(twin)):
            if d["kind"] in ("dictionary_item_added", "iterable_item_added"):
                continue
            element = re.sub(r"\['([^']*)'\]", r".\1", d["path"].replace("root", "", 1)).lstrip(".")
            assert any(element == x or element.startswith(x + ".") or element.startswith(x + "[") for x in lost), \
                (path.name, element)
    assert by_id


def test_it_keeps_bp_components_and_values():
    doc = load(next(p for p in FILES if p.name == "observation_vitals_blood_pressure.json"))
    comp = from_fhir([doc], template_id="t").composition
    entry = comp["content"][0]
    assert entry["archetype_node_id"] == "openEHR-EHR-OBSERVATION.blood_pressure.v2"
    items = entry["data"]["events"][0]["data"]["items"]
    got = {i["archetype_node_id"]: (i["value"]["magnitude"], i["value"]["units"]) for i in items}
    assert got == {"at0004": (107, "mm[Hg]"), "at0005": (60, "mm[Hg]")}
    assert entry["data"]["events"][0]["time"]["value"] == doc["effectiveDateTime"]
    assert entry["feeder_audit"]["originating_system_item_ids"][0]["id"] == "Observation/blood-pressure"


def test_it_reads_a_lab_report_bundle():
    doc = load(next(p for p in FILES if p.name.startswith("kds_lab_report")))
    comp = from_fhir(_resources(doc), template_id="t").composition
    entry = comp["content"][0]
    event_items = entry["data"]["events"][0]["data"]["items"]
    analytes = [i for i in event_items if i["archetype_node_id"] == "openEHR-EHR-CLUSTER.laboratory_test_analyte.v1"]
    assert len(analytes) == 6
    status = [i for i in event_items if i["archetype_node_id"] == "at0073"][0]
    assert status["value"]["defining_code"]["code_string"] == "at0038"  # final
    nulls = [a for a in analytes if any("null_flavour" in i for i in a["items"] if i["archetype_node_id"] == "at0001")]
    assert len(nulls) == 1
