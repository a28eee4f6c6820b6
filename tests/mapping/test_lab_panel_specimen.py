"""Lab panels and specimens, both ways (issue 13, part 6).

CLUSTER.laboratory_test_panel.v0 -> a grouping laboratory Observation in DiagnosticReport.result whose
hasMember are the panel's analytes; CLUSTER.specimen.v1 -> a Specimen in DiagnosticReport.specimen that
every result Observation references; DV_QUANTITY.normal_range <-> Observation.referenceRange.  Corpus
files are read, never edited; panels and second specimens are built here (no corpus composition has one).
"""
import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.mapping import UnmappedTemplate, compare_clinical, from_fhir, map_back, to_fhir, validate_fhir
from sync.mapping.identifiers import build_source_identifier, parse_source_identifier, resource_id
from sync.mapping.lookup import spec_for_resource
from sync.mapping.residue import strip
from sync.workflow.bundle import build_transaction

from .conftest import CORPUS, load

# The rows this module proves (sync.mapping.coverage reads it; tests/mapping/test_coverage.py checks it).
COVERS = {"OBSERVATION.laboratory_test_result.v1": "forward reverse hapi",
          "CLUSTER.laboratory_test_analyte.v1": "forward reverse hapi",
          "CLUSTER.laboratory_test_panel.v0": "forward reverse hapi",
          "CLUSTER.specimen.v1": "forward reverse hapi"}

ARGS = dict(site="site1", ehr_id="e1", patient_ref="Patient/p1")
UID = "bbbbbbbb-0000-4000-8000-000000000002::corpus::1"
LAB = "openEHR-EHR-OBSERVATION.laboratory_test_result.v1"
PANEL = "openEHR-EHR-CLUSTER.laboratory_test_panel.v0"
ANALYTE = "openEHR-EHR-CLUSTER.laboratory_test_analyte.v1"
SPECIMEN = "openEHR-EHR-CLUSTER.specimen.v1"
LAB_CATEGORY = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                             "code": "laboratory"}]}]
BIOPROBEN = "https://www.charite.de/fhir/sid/Bioproben"


def _composition(name: str) -> dict:
    comp = load(CORPUS / "openehr" / "compositions" / name)
    if not (comp.get("uid") or {}).get("value"):
        comp["uid"] = {"_type": "OBJECT_VERSION_ID", "value": UID}
    return comp


def _kds() -> dict:
    return _composition("kds_lab_report.patient1.composition.json")


def _tree(comp: dict) -> dict:
    return comp["content"][0]["data"]["events"][0]["data"]


def _cluster(archetype: str, name, items: list) -> dict:
    name = name if isinstance(name, dict) else {"_type": "DV_TEXT", "value": name}
    return {"_type": "CLUSTER", "name": name, "archetype_node_id": archetype,
            "archetype_details": {"_type": "ARCHETYPED", "archetype_id": {"_type": "ARCHETYPE_ID", "value": archetype},
                                  "rm_version": "1.0.4"}, "items": items}


def _paneled() -> dict:
    """The KDS report with analytes 1-3 in a coded panel holding a nested text-named panel (4-5); 6 alone."""
    comp = _kds()
    tree = _tree(comp)
    analytes = [i for i in tree["items"] if i["archetype_node_id"] == ANALYTE]
    rest = [i for i in tree["items"] if i["archetype_node_id"] != ANALYTE]
    inner = _cluster(PANEL, "Differentialblutbild", analytes[3:5])
    name = {"_type": "DV_CODED_TEXT", "value": "Short blood count panel - Blood",
            "defining_code": {"_type": "CODE_PHRASE", "terminology_id": {"_type": "TERMINOLOGY_ID", "value": "LOINC"},
                              "code_string": "55429-5"}}
    tree["items"] = rest + [_cluster(PANEL, name, analytes[:3] + [inner])] + analytes[5:]
    return comp


def _by_ref(resources: list[dict]) -> dict:
    return {f"{r['resourceType']}/{r['id']}": r for r in resources}


def _reachable(report: dict, by_ref: dict) -> list[dict]:
    """Every Observation reached from the report through result and hasMember, with repeats."""
    out, queue = [], [r["reference"] for r in report.get("result") or []]
    while queue:
        obs = by_ref[queue.pop(0)]
        out.append(obs)
        queue.extend(m["reference"] for m in obs.get("hasMember") or [])
    return out


def _round_trip(comp: dict) -> list:
    res = to_fhir(comp, **ARGS)
    back = from_fhir(res.resources, template_id="t").composition
    return compare_clinical(comp["content"], back["content"])


# ------------------------------------------------------------------ openEHR -> FHIR: specimen
def test_the_specimen_cluster_becomes_a_specimen_the_report_and_every_result_reference():
    comp = _kds()
    res = to_fhir(comp, **ARGS)
    specimens = [r for r in res.resources if r["resourceType"] == "Specimen"]
    assert len(specimens) == 1
    sp = specimens[0]
    path = f"/content[{LAB}]/data[at0001]/events[at0002]/data[at0003]/items[{SPECIMEN}]"
    ident = build_source_identifier("site1", UID.split("::")[0], path)
    assert sp["identifier"][0] == ident and sp["id"] == resource_id(ident["value"])
    ref = f"Specimen/{sp['id']}"
    report = next(r for r in res.resources if r["resourceType"] == "DiagnosticReport")
    assert report["specimen"] == [{"reference": ref}]
    results = [r for r in res.resources if r["resourceType"] == "Observation"]
    assert len(results) == 6 and all(o["specimen"]["reference"] == ref for o in results)
    # the analytes' own specimen identifier (at0026) is kept next to the reference
    assert sum(o["specimen"].get("identifier") == {"value": "BP_000001", "system": BIOPROBEN} for o in results) == 5
    assert sp["type"]["coding"][0]["code"] == "122555007"
    assert {"system": BIOPROBEN, "value": "BP_000001"} in [{k: i[k] for k in ("system", "value")}
                                                           for i in sp["identifier"][1:]]
    assert sp["collection"]["collectedDateTime"].startswith("2024-02-15T11:05:00")
    assert sp["collection"]["bodySite"]["coding"][0]["code"] == "789218009"
    assert sp["collection"]["method"]["coding"][0]["code"] == "129300006"
    assert sp["collection"]["fastingStatusCodeableConcept"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0916", "code": "F",
        "display": "Patient was fasting prior to the procedure."}
    assert "status" not in sp  # 'adequacy for testing' is no availability status: residue
    lost = [x.path for x in res.losses if f"[{SPECIMEN}]" in x.path]
    assert any(p.endswith("items[at0041]") for p in lost)
    assert not any(p.endswith(("items[at0029]", "items[at0088]", "items[at0007]", "items[at0008]")) for p in lost)
    assert validate_fhir(sp) == []


@pytest.mark.parametrize("name", ["kds_lab_report.patient1.composition.json", "lab_blood_gas.composition.json",
                                  "lab_laborbefund.composition.json"])
def test_corpus_lab_compositions_round_trip_through_fhir(name):
    comp = _composition(name)
    res = to_fhir(comp, **ARGS)
    assert from_fhir(res.resources, template_id="t").losses == []
    assert compare_clinical(comp["content"], from_fhir(res.resources, template_id="t").composition["content"]) == []
    entries, _ = map_back(res.resources, template_id="t")
    assert compare_clinical(comp["content"], entries) == []


def test_a_lone_result_keeps_the_entry_language_where_the_template_has_another():
    from sync.mapping import templates

    templates.register(CORPUS / "openehr" / "templates" / "lab_laborbefund.opt")  # language de; the entry's: en
    comp = _composition("lab_laborbefund.composition.json")
    res = to_fhir(comp, **ARGS)
    assert [r["resourceType"] for r in res.resources] == ["Observation", "Composition"]  # + the report's header
    assert res.resources[0]["language"] == "en"
    entries, _ = map_back(res.resources, template_id="Laborbefund")
    assert compare_clinical(comp["content"], entries) == []


def test_a_lab_result_with_one_analyte_and_its_specimen_is_that_observation_first_and_its_specimen():
    comp = _kds()
    tree = _tree(comp)
    first = next(i for i in tree["items"] if i["archetype_node_id"] == ANALYTE)
    tree["items"] = [i for i in tree["items"] if i["archetype_node_id"] != ANALYTE] + [first]
    res = to_fhir(comp, **ARGS)
    assert [r["resourceType"] for r in res.resources] == ["Observation", "Specimen", "Composition"]
    assert res.resources[0]["specimen"]["reference"] == f"Specimen/{res.resources[1]['id']}"
    assert _round_trip(comp) == []


def test_a_report_whose_only_analyte_names_another_specimen_keeps_its_diagnostic_report():
    comp = _kds()
    tree = _tree(comp)
    first = copy.deepcopy(next(i for i in tree["items"] if i["archetype_node_id"] == ANALYTE))
    next(i for i in first["items"] if i["archetype_node_id"] == "at0026")["value"]["id"] = "BP_999"
    tree["items"] = [i for i in tree["items"] if i["archetype_node_id"] != ANALYTE] + [first]
    res = to_fhir(comp, **ARGS)
    assert sorted(r["resourceType"] for r in res.resources) == ["Composition", "DiagnosticReport", "Observation",
                                                                 "Specimen"]
    obs = next(r for r in res.resources if r["resourceType"] == "Observation")
    assert "reference" not in obs["specimen"]  # it names BP_999: not this report's specimen
    assert _round_trip(comp) == []


def test_results_reference_the_specimen_their_analyte_names_and_none_when_that_is_unclear():
    comp = _kds()
    tree = _tree(comp)
    first = next(i for i in tree["items"] if i["archetype_node_id"] == SPECIMEN)
    second = copy.deepcopy(first)
    next(i for i in second["items"] if i["archetype_node_id"] == "at0088")["value"]["id"] = "BP_000002"
    tree["items"].insert(2, second)
    analytes = [i for i in tree["items"] if i["archetype_node_id"] == ANALYTE]
    named = [next((i for i in a["items"] if i["archetype_node_id"] == "at0026"), None) for a in analytes]
    named[1]["value"]["id"] = "BP_000002"
    named[2]["value"]["id"] = "BP_000003"  # a specimen this report does not hold
    res = to_fhir(comp, **ARGS)
    by_ref = _by_ref(res.resources)
    report = next(r for r in res.resources if r["resourceType"] == "DiagnosticReport")
    assert len(report["specimen"]) == 2
    ids = {ref["reference"]: by_ref[ref["reference"]]["identifier"][1]["value"] for ref in report["specimen"]}
    linked = [(o.get("specimen") or {}).get("reference") for o in _reachable(report, by_ref)]
    assert [ids.get(x) for x in linked] == ["BP_000001", "BP_000002", None, "BP_000001", "BP_000001", None]
    assert _round_trip(comp) == []


# ------------------------------------------------------------------ openEHR -> FHIR: panels
def test_a_panel_becomes_a_grouping_observation_whose_members_are_its_analytes():
    comp = _paneled()
    res = to_fhir(comp, **ARGS)
    by_ref = _by_ref(res.resources)
    report = next(r for r in res.resources if r["resourceType"] == "DiagnosticReport")
    top = [by_ref[r["reference"]] for r in report["result"]]
    assert [bool(o.get("hasMember")) for o in top] == [True, False]
    panel = top[0]
    assert panel["code"]["coding"][0]["code"] == "55429-5" and panel["code"]["text"] == "Short blood count panel - Blood"
    assert panel["category"] == [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                              "code": "laboratory", "display": "Laboratory"}]}]
    assert panel["status"] == report["status"] and not any(k.startswith("value") for k in panel)
    members = [by_ref[m["reference"]] for m in panel["hasMember"]]
    [nested] = [m for m in members if m.get("hasMember")]
    assert len(members) == 4 and nested["code"] == {"text": "Differentialblutbild"} and len(nested["hasMember"]) == 2
    assert parse_source_identifier(nested)[2].endswith(f"/items[{PANEL}]/items[{PANEL}]")
    # each analyte is a result of the report exactly once; every Observation references the specimen
    reached = _reachable(report, by_ref)
    analytes = [o for o in reached if not o.get("hasMember")]
    assert len(analytes) == 6 and len({o["id"] for o in reached}) == len(reached) == 8
    specimen = next(r for r in res.resources if r["resourceType"] == "Specimen")
    assert all(o["specimen"]["reference"] == f"Specimen/{specimen['id']}" for o in reached)
    assert [r["id"] for r in to_fhir(_paneled(), **ARGS).resources] == [r["id"] for r in res.resources]
    assert all(validate_fhir(r) == [] for r in res.resources)
    assert _round_trip(comp) == []


def test_a_report_of_one_panel_keeps_its_diagnostic_report():
    comp = _paneled()
    tree = _tree(comp)
    tree["items"] = [i for i in tree["items"] if i["archetype_node_id"] != ANALYTE]
    res = to_fhir(comp, **ARGS)
    report = next(r for r in res.resources if r["resourceType"] == "DiagnosticReport")
    assert len(report["result"]) == 1
    assert _round_trip(comp) == []


# ------------------------------------------------------------------ FHIR -> openEHR
def _analyte_obs(oid: str, code: str, value: float, **extra) -> dict:
    return {"resourceType": "Observation", "id": oid, "status": "final", "category": copy.deepcopy(LAB_CATEGORY),
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-02-15T12:00:00+01:00",
            "valueQuantity": {"value": value, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"},
            **extra}


def _panel_obs(oid: str, members: list[str], text="Blutbild") -> dict:
    return {"resourceType": "Observation", "id": oid, "status": "final", "category": copy.deepcopy(LAB_CATEGORY),
            "code": {"text": text}, "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2024-02-15T12:00:00+01:00",
            "hasMember": [{"reference": f"Observation/{m}"} for m in members]}


def _report(results: list[str], specimens=()) -> dict:
    return {"resourceType": "DiagnosticReport", "id": "r1", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "11502-2"}]}, "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2024-02-15T12:00:00+01:00",
            "result": [{"reference": f"Observation/{r}"} for r in results],
            **({"specimen": [{"reference": f"Specimen/{s}"} for s in specimens]} if specimens else {})}


def _items(comp: dict) -> list[dict]:
    [entry] = comp["content"]
    assert entry["archetype_node_id"] == LAB
    return entry["data"]["events"][0]["data"]["items"]


def _ids(items: list[dict], archetype: str) -> list[dict]:
    return [i for i in items if i["archetype_node_id"] == archetype]


def test_the_fhir_born_kds_report_comes_back_with_its_specimen_and_reference_ranges():
    doc = load(CORPUS / "fhir" / "kds_lab_report.patient1.bundle.json")
    out = from_fhir([e["resource"] for e in doc["entry"]], template_id="t")
    items = _items(out.composition)
    [specimen] = _ids(items, SPECIMEN)
    got = {i["archetype_node_id"]: i.get("value") for i in specimen["items"]}
    assert got["at0029"]["defining_code"]["code_string"] == "122555007"
    assert (got["at0088"]["issuer"], got["at0088"]["id"]) == (BIOPROBEN, "BP_000001")
    assert got["at0015"]["value"] == "2024-02-15T11:05:00+01:00"
    assert got["at0087"]["defining_code"]["code_string"] == "789218009"
    assert got["at0007"]["defining_code"]["code_string"] == "129300006"
    assert got["at0008"]["defining_code"]["code_string"] == "F"
    [container] = _ids(specimen["items"], "openEHR-EHR-CLUSTER.specimen_container.v1")
    assert container["items"][0]["value"]["defining_code"]["code_string"] == "83059008"  # type; capacity next
    assert [i["archetype_node_id"] for i in container["items"]] == ["at0005", "at0035"]
    analytes = _ids(items, ANALYTE)
    assert len(analytes) == 6
    result = next(i for i in analytes[0]["items"] if i["archetype_node_id"] == "at0001")["value"]
    assert result["normal_range"] == {
        "_type": "DV_INTERVAL", "lower": {"_type": "DV_QUANTITY", "magnitude": 3.9, "units": "/nL",
                                          "units_display_name": "/nanoliter"},
        "upper": {"_type": "DV_QUANTITY", "magnitude": 10.5, "units": "/nL", "units_display_name": "/nanoliter"},
        "lower_unbounded": False, "upper_unbounded": False, "lower_included": True, "upper_included": True}
    lost = {x.path for x in out.losses}
    obs1 = "Observation/mii-exa-test-data-patient-1-labobs-1"
    assert not {f"{obs1}:referenceRange[0].age", f"{obs1}:referenceRange[0].appliesTo"} & lost  # feeder audit
    assert not any(p.startswith(f"{obs1}:referenceRange[0].") and p.split(".")[-1] in ("low", "high", "type")
                   for p in lost)
    sp = "Specimen/mii-exa-test-data-patient-1-specimen-1"
    assert sp not in lost and not {f"{sp}:status", f"{sp}:container[0].additiveReference"} & lost  # feeder audit
    assert not any(p.startswith(f"{sp}:") and p.split(":")[1].split(".")[0] in ("type", "identifier") and
                   "version" not in p for p in lost)


def test_a_fhir_born_panel_comes_back_as_a_panel_cluster_of_its_analytes():
    resources = [_report(["g", "c"]), _panel_obs("g", ["a", "b"]), _analyte_obs("a", "718-7", 7.2),
                 _analyte_obs("b", "26464-8", 17), _analyte_obs("c", "26453-1", 5)]
    out = from_fhir(resources, template_id="t")
    items = _items(out.composition)
    [panel] = _ids(items, PANEL)
    assert panel["name"] == {"_type": "DV_TEXT", "value": "Blutbild"}
    inside = _ids(panel["items"], ANALYTE)
    assert [next(i for i in a["items"] if i["archetype_node_id"] == "at0024")["value"]["defining_code"]["code_string"]
            for a in inside] == ["718-7", "26464-8"]
    assert len(_ids(items, ANALYTE)) == 1
    assert [x for x in out.losses if x.kind == "unmapped-entry"] == []


def test_panel_members_that_diagnostic_report_result_lists_too_are_read_once_in_their_panel():
    resources = [_report(["g", "a", "b"]), _panel_obs("g", ["a", "b"]), _analyte_obs("a", "718-7", 7.2),
                 _analyte_obs("b", "26464-8", 17)]
    items = _items(from_fhir(resources, template_id="t").composition)
    assert len(_ids(items, PANEL)) == 1 and _ids(items, ANALYTE) == []
    assert len(_ids(_ids(items, PANEL)[0]["items"], ANALYTE)) == 2


def test_a_fhir_born_panel_without_report_becomes_one_lab_result_holding_it():
    resources = [_panel_obs("g", ["a", "b"]), _analyte_obs("a", "718-7", 7.2), _analyte_obs("b", "26464-8", 17)]
    items = _items(from_fhir(resources, template_id="t").composition)
    assert len(_ids(items, PANEL)) == 1 and len(_ids(_ids(items, PANEL)[0]["items"], ANALYTE)) == 2


def test_which_file_claims_a_grouping_observation():
    panel = _panel_obs("g", ["a"])
    panel["code"] = {"coding": [{"system": "http://loinc.org", "code": "55429-5"}]}  # the KDS order's panel code
    assert spec_for_resource(panel).archetype == PANEL
    assert spec_for_resource({**panel, "category": [{"coding": [{"code": "vital-signs"}]}]}) is None
    valued = {**panel, "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
              "valueQuantity": {"value": 1, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}}
    assert spec_for_resource(valued).archetype == ANALYTE  # a value of its own: no panel
    vitals = load(CORPUS / "fhir" / "observation_vitals_panel.json")
    assert (spec_for_resource(vitals) or type("S", (), {"archetype": None})).archetype != PANEL


def test_a_specimen_nothing_references_is_no_entry():
    specimen = {"resourceType": "Specimen", "id": "s1", "subject": {"reference": "Patient/p1"},
                "type": {"text": "Venous blood"}}
    with pytest.raises(UnmappedTemplate):
        from_fhir([specimen], template_id="t")
    out = from_fhir([specimen, _analyte_obs("a", "718-7", 7.2)], template_id="t")
    assert _ids(_items(out.composition), SPECIMEN) == []
    assert [(x.path, x.kind) for x in out.losses if x.path == "Specimen/s1"] == [("Specimen/s1", "unmapped-entry")]


def test_a_specimen_a_lone_result_references_comes_back_in_its_lab_result():
    specimen = {"resourceType": "Specimen", "id": "s1", "subject": {"reference": "Patient/p1"},
                "type": {"text": "Venous blood"}, "receivedTime": "2024-02-15T11:30:00+01:00",
                "collection": {"collectedPeriod": {"start": "2024-02-15T08:00:00+01:00",
                                                   "end": "2024-02-15T10:00:00+01:00"}}}
    obs = _analyte_obs("a", "718-7", 7.2, specimen={"reference": "Specimen/s1"})
    out = from_fhir([obs, specimen], template_id="t")
    [cluster] = _ids(_items(out.composition), SPECIMEN)
    got = {i["archetype_node_id"]: i["value"] for i in cluster["items"]}
    assert got["at0029"] == {"_type": "DV_TEXT", "value": "Venous blood"}
    assert got["at0034"]["value"] == "2024-02-15T11:30:00+01:00"
    assert got["at0015"] == {"_type": "DV_INTERVAL", "lower_unbounded": False, "upper_unbounded": False,
                             "lower_included": True, "upper_included": True,
                             "lower": {"_type": "DV_DATE_TIME", "value": "2024-02-15T08:00:00+01:00"},
                             "upper": {"_type": "DV_DATE_TIME", "value": "2024-02-15T10:00:00+01:00"}}
    assert not [x for x in out.losses if x.path.startswith("Specimen/")]


# ------------------------------------------------------------------ reference ranges and intervals
def test_reference_ranges_and_a_collection_interval_round_trip_from_openehr():
    comp = _kds()
    tree = _tree(comp)
    specimen = next(i for i in tree["items"] if i["archetype_node_id"] == SPECIMEN)
    when = next(i for i in specimen["items"] if i["archetype_node_id"] == "at0015")
    when["value"] = {"_type": "DV_INTERVAL", "lower": {"_type": "DV_DATE_TIME", "value": "2024-02-15T08:00:00+01:00"},
                     "upper_unbounded": True, "lower_unbounded": False, "lower_included": True,
                     "upper_included": False}
    result = next(i for i in next(a for a in tree["items"] if a["archetype_node_id"] == ANALYTE)["items"]
                  if i["archetype_node_id"] == "at0001")["value"]
    q = {"_type": "DV_QUANTITY", "units": "/nL"}
    result["normal_range"] = {"_type": "DV_INTERVAL", "upper": {**q, "magnitude": 10.5}, "lower_unbounded": True,
                              "upper_unbounded": False, "lower_included": False, "upper_included": True}
    result["other_reference_ranges"] = [{"_type": "REFERENCE_RANGE", "meaning": {"_type": "DV_TEXT", "value": "critical"},
                                         "range": {"_type": "DV_INTERVAL", "lower": {**q, "magnitude": 1.0},
                                                   "upper": {**q, "magnitude": 30.0}, "lower_unbounded": False,
                                                   "upper_unbounded": False, "lower_included": True,
                                                   "upper_included": True}}]
    res = to_fhir(comp, **ARGS)
    sp = next(r for r in res.resources if r["resourceType"] == "Specimen")
    assert sp["collection"]["collectedPeriod"] == {"start": "2024-02-15T08:00:00+01:00"}
    obs = next(r for r in res.resources if r["resourceType"] == "Observation" and "referenceRange" in r)
    assert [(r.get("low", {}).get("value"), r["high"]["value"], r["type"]) for r in obs["referenceRange"]] == [
        (None, 10.5, {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/referencerange-meaning",
                                  "code": "normal", "display": "Normal Range"}]}),
        (1.0, 30.0, {"text": "critical"})]
    assert not [x for x in res.losses if "normal_range" in x.path or "at0015" in x.path.split("/")[-1]
                and "time without zone" not in x.reason]
    assert _round_trip(comp) == []


def test_a_reference_range_with_no_bounds_has_no_openehr_home_and_is_kept_in_the_feeder_audit():
    obs = _analyte_obs("a", "718-7", 7.2, referenceRange=[{"text": "depends on age"},
                                                           {"low": {"value": 7.5, "unit": "g/dL",
                                                                    "system": "http://unitsofmeasure.org",
                                                                    "code": "g/dL"}}])
    out = from_fhir([obs], template_id="t")
    [analyte] = _ids(_items(out.composition), ANALYTE)
    result = next(i for i in analyte["items"] if i["archetype_node_id"] == "at0001")["value"]
    assert result["normal_range"]["lower"]["magnitude"] == 7.5 and result["normal_range"]["upper_unbounded"]
    assert not out.losses  # the text-only range has no element: the feeder audit keeps it (issue 21)
    assert "depends on age" in out.composition["content"][0]["feeder_audit"]["original_content"]["value"]


def test_an_analyte_with_several_results_has_the_first_ones_value_only_and_keeps_the_rest_in_the_residue():
    comp = _kds()
    analyte = next(a for a in _tree(comp)["items"] if a["archetype_node_id"] == ANALYTE)
    first = next(i for i in analyte["items"] if i["archetype_node_id"] == "at0001")
    analyte["items"] += [{"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": "Result"}, "archetype_node_id": "at0001",
                          "value": {"_type": "DV_TEXT", "value": "hemolytic"}},
                         {"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": "Result"}, "archetype_node_id": "at0001",
                          "null_flavour": {"_type": "DV_CODED_TEXT", "value": "unknown",
                                           "defining_code": {"_type": "CODE_PHRASE",
                                                             "terminology_id": {"_type": "TERMINOLOGY_ID",
                                                                                "value": "openehr"},
                                                             "code_string": "253"}}}]
    res = to_fhir(comp, **ARGS)
    obs = next(r for r in res.resources if r["resourceType"] == "Observation"
               and r["code"]["coding"][0]["code"] == "26464-8")
    assert [k for k in obs if k.startswith("value") or k == "dataAbsentReason"] == ["valueQuantity"]
    assert obs["valueQuantity"]["value"] == first["value"]["magnitude"] and validate_fhir(obs) == []
    assert _round_trip(comp) == []


# ------------------------------------------------------------------ the transaction the engine writes
def test_the_transaction_writes_the_specimen_with_the_others_and_points_every_reference_at_it():
    res = to_fhir(_paneled(), **ARGS).resources
    bundle, keys = build_transaction(res, None, {}, UID)
    [entry] = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Specimen"]
    key = keys[bundle["entry"].index(entry)]
    assert entry["request"] == {"method": "POST", "url": "Specimen",
                                "ifNoneExist": f"identifier=urn:conflictdesk:source|{key}"}
    refs = [e["resource"].get("specimen") for e in bundle["entry"] if e["resource"]["resourceType"] != "Specimen"]
    report = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    assert report["specimen"] == [{"reference": entry["fullUrl"]}]
    assert [r["reference"] for r in refs if isinstance(r, dict)] == [entry["fullUrl"]] * 8


# ------------------------------------------------------------------ generated panels and specimens
_QTY = st.floats(min_value=0.1, max_value=500, allow_nan=False).map(lambda x: round(x, 2))
_TEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyzäöü ", min_size=1, max_size=10).map(str.strip).filter(bool)


@st.composite
def _analyte(draw, n):
    value = {"_type": "DV_QUANTITY", "magnitude": draw(_QTY), "units": "mmol/L"}
    if draw(st.booleans()):
        low, high = sorted([draw(_QTY), draw(_QTY)])
        value["normal_range"] = {"_type": "DV_INTERVAL", "lower": {"_type": "DV_QUANTITY", "magnitude": low,
                                                                  "units": "mmol/L"},
                                 "upper": {"_type": "DV_QUANTITY", "magnitude": high, "units": "mmol/L"},
                                 "lower_unbounded": False, "upper_unbounded": False, "lower_included": True,
                                 "upper_included": True}
    code = {"_type": "DV_CODED_TEXT", "value": f"Analyte {n}",
            "defining_code": {"_type": "CODE_PHRASE", "terminology_id": {"_type": "TERMINOLOGY_ID", "value": "LOINC"},
                              "code_string": draw(st.sampled_from(["718-7", "26464-8", "26453-1", "2345-7"]))}}
    return _cluster(ANALYTE, "Laboratory analyte result", [
        {"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": "Analyte name"}, "archetype_node_id": "at0024",
         "value": code},
        {"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": "Result"}, "archetype_node_id": "at0001",
         "value": value}])


@st.composite
def _panel(draw, depth, counter):
    items = [draw(_analyte(next(counter))) for _ in range(draw(st.integers(1, 3)))]
    if depth and draw(st.booleans()):
        items.append(draw(_panel(depth - 1, counter)))
    return _cluster(PANEL, draw(_TEXT), items)


@st.composite
def _lab_composition(draw):
    import itertools
    counter = itertools.count(1)
    items = [{"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": "Test name"}, "archetype_node_id": "at0005",
              "value": {"_type": "DV_TEXT", "value": draw(_TEXT)}}]
    if draw(st.booleans()):
        sp = [{"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": "Specimen type"}, "archetype_node_id": "at0029",
               "value": {"_type": "DV_TEXT", "value": draw(_TEXT)}}]
        if draw(st.booleans()):
            sp.append({"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": "Laboratory specimen identifier"},
                       "archetype_node_id": "at0001",
                       "value": {"_type": "DV_IDENTIFIER", "id": draw(_TEXT), "issuer": "https://lab.example/ids"}})
        if draw(st.booleans()):
            sp.append({"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": "Comment"}, "archetype_node_id": "at0045",
                       "value": {"_type": "DV_TEXT", "value": draw(_TEXT)}})
        items.append(_cluster(SPECIMEN, "Specimen", sp))
    for _ in range(draw(st.integers(1, 3))):
        items.append(draw(_panel(1, counter)) if draw(st.booleans()) else draw(_analyte(next(counter))))
    comp = _kds()
    entry = comp["content"][0]
    entry["data"]["events"][0]["data"]["items"] = items
    entry.pop("protocol", None)
    return comp


def _count(items, archetype):
    return sum((i["archetype_node_id"] == archetype) + _count(i.get("items") or [], archetype)
               for i in items if isinstance(i, dict) and i.get("_type") == "CLUSTER")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_lab_composition())
def test_generated_panels_and_specimens_round_trip_and_reach_every_analyte_once(comp):
    res = to_fhir(comp, **ARGS)
    assert all(validate_fhir(r) == [] for r in res.resources)
    by_ref = _by_ref(res.resources)
    items = _tree(comp)["items"]
    report = next((r for r in res.resources if r["resourceType"] == "DiagnosticReport"), None)
    reached = _reachable(report, by_ref) if report else [r for r in res.resources if r["resourceType"] == "Observation"]
    assert len(reached) == len({o["id"] for o in reached}) == _count(items, ANALYTE) + _count(items, PANEL)
    specimens = [r for r in res.resources if r["resourceType"] == "Specimen"]
    assert len(specimens) == _count(items, SPECIMEN)
    if specimens:
        assert all(o["specimen"]["reference"] == f"Specimen/{specimens[0]['id']}" for o in reached)
    back = from_fhir(res.resources, template_id="t")
    assert back.losses == []
    assert compare_clinical(comp["content"], back.composition["content"]) == []
    # the standard elements alone keep the structure: panels, analytes and the specimen come back
    bare = _items(from_fhir([strip(r) for r in res.resources], template_id="t").composition)
    assert (_count(bare, PANEL), _count(bare, ANALYTE), _count(bare, SPECIMEN)) == \
        (_count(items, PANEL), _count(items, ANALYTE), _count(items, SPECIMEN))


# ------------------------------------------------------------------ HAPI $validate (real server)
@pytest.mark.integration
def test_hapi_validates_panels_specimens_and_the_fhir_born_report(fhir_base_url):
    from concurrent.futures import ThreadPoolExecutor

    from .hapi import hapi_errors

    comp = _kds()
    tree = _tree(comp)
    specimen = next(i for i in tree["items"] if i["archetype_node_id"] == SPECIMEN)
    specimen["items"].append(_cluster("openEHR-EHR-CLUSTER.specimen_container.v1", "Specimen container", [
        {"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": "Container type"}, "archetype_node_id": "at0005",
         "value": {"_type": "DV_TEXT", "value": "EDTA tube"}},
        {"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": "Capacity"}, "archetype_node_id": "at0035",
         "value": {"_type": "DV_QUANTITY", "magnitude": 10.0, "units": "mL"}}]))
    resources = to_fhir(_paneled(), **ARGS).resources + to_fhir(comp, **ARGS).resources
    doc = load(CORPUS / "fhir" / "kds_lab_report.patient1.bundle.json")
    born = copy.deepcopy(from_fhir([e["resource"] for e in doc["entry"]], template_id="t").composition)
    born["uid"] = {"value": "aaaaaaaa-0000-4000-8000-000000000001::x::1"}
    resources += to_fhir(born, **ARGS).resources
    assert {r["resourceType"] for r in resources} >= {"DiagnosticReport", "Observation", "Specimen"}
    assert any(r.get("container") for r in resources if r["resourceType"] == "Specimen")
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda r: hapi_errors(fhir_base_url, r), resources))
    assert {f"{r['resourceType']}/{r['id']}": e for r, e in zip(resources, found) if e} == {}
