"""Early warning rows: OBSERVATION.news2.v1 <-> the NEWS2 total score Observation (SNOMED CT UK 1104051000000101, a
component per parameter score) and OBSERVATION.acvpu.v1 <-> the ACVPU Observation (1104441000000107), codes and
shapes as the NHS England NEWS2 FHIR example in the corpus sends them.  The openEHR side is the corpus NEWS2
template (news2_encounter_vitals.opt, which holds both archetypes' definitions) and its FLAT composition."""
import copy
import json
import uuid

import pytest

from sync.mapping import compare_clinical, flat, from_fhir, rmpath, to_fhir, validate_fhir, webtemplate
from sync.mapping.hooks_news2 import ACVPU_CODES, PARAMETERS, SNOMED
from sync.mapping.report import run
from sync.mapping.terminology import LOCAL_SYSTEM

from .conftest import CORPUS
from .hapi import hapi_errors

# The rows this module proves (sync.mapping.coverage reads it; tests/mapping/test_coverage.py checks it).
COVERS = {"OBSERVATION.news2.v1": "forward reverse hapi", "OBSERVATION.acvpu.v1": "forward reverse hapi"}

OPT = CORPUS / "openehr" / "templates" / "news2_encounter_vitals.opt"
FLAT = CORPUS / "openehr" / "compositions" / "news2_encounter_vitals.flat.json"
BUNDLE = CORPUS / "fhir" / "news2_vitals_observations.bundle.json"
NEWS2, ACVPU = "openEHR-EHR-OBSERVATION.news2.v1", "openEHR-EHR-OBSERVATION.acvpu.v1"
TOTAL_CODE, ACVPU_CODE = "1104051000000101", "1104441000000107"
ARGS = dict(site="s", ehr_id="e", patient_ref="Patient/1")


def _composition() -> dict:
    comp = flat.to_canonical(json.loads(FLAT.read_text()), OPT.read_bytes(), now="2026-01-01T00:00:00Z")
    comp["uid"] = {"_type": "OBJECT_VERSION_ID", "value": f"{uuid.uuid4()}::news2::1"}
    return comp


def _by_code(resources, code):
    return [r for r in resources if r["resourceType"] == "Observation"
            and any(c.get("code") == code for c in r["code"]["coding"])]


def _items(entry) -> dict:
    events = (entry.get("data") or {}).get("events") or [{}]
    return {i["archetype_node_id"]: i["value"] for i in (events[0].get("data") or {}).get("items", [])}


def _entry(comp, archetype):
    [entry] = [e for _, e in rmpath.entries(comp) if e["archetype_node_id"] == archetype]
    return entry


def test_the_bands_are_the_templates_own():
    """Every parameter's score -> band table is what the template's archetype says (no band made up or left out)."""
    wt = webtemplate.to_json(webtemplate.build(OPT.read_bytes()))
    found = {}

    def walk(n, inside=False):
        inside = inside or n.get("nodeId") == NEWS2
        if inside and n.get("rmType") == "DV_ORDINAL":
            [inputs] = [i for i in n["inputs"] if i.get("list")]
            found[n["nodeId"]] = {(x["ordinal"], x["value"], x["label"]) for x in inputs["list"]}
        for c in n.get("children") or []:
            walk(c, inside)
    walk(wt["tree"])
    ours = {node: {(n, code, rubric) for n, bands in table.items() for code, rubric in bands}
            for node, (_, _, _, table) in PARAMETERS.items()}
    assert {node: found[node] for node in ours} == ours
    assert set(found) - set(ours) == {"at0047"}  # SpO2 Scale 2: no score concept in the example, residue


def test_a_news2_entry_is_a_total_score_with_a_component_per_parameter_score():
    comp = _composition()
    resources = to_fhir(comp, **ARGS).resources
    [news2] = _by_code(resources, TOTAL_CODE)
    items = _items(_entry(comp, NEWS2))
    assert news2["valueQuantity"] == {"value": items["at0028"]["magnitude"], "unit": "ScoreOf",
                                      "system": "http://unitsofmeasure.org", "code": "{ScoreOf}"}
    scores = {c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"] for c in news2["component"]}
    assert scores == {PARAMETERS[node][1]: items[node]["value"] for node in PARAMETERS if node in items}
    assert len(scores) == 7 and news2["category"][0]["coding"][0]["code"] == "survey"
    [acvpu] = _by_code(resources, ACVPU_CODE)
    code = _items(_entry(comp, ACVPU))["at0004"]["defining_code"]["code_string"]
    assert acvpu["valueCodeableConcept"]["coding"][0] == {"system": LOCAL_SYSTEM, "code": code,
                                                          "display": ACVPU_CODES[code]}
    assert all(validate_fhir(r) == [] for r in resources)


def test_the_corpus_news2_template_and_composition_round_trip():
    rep = run([FLAT, OPT])
    assert [r.state for r in rep.records] == ["round-tripped", "round-tripped"], rep.lines()


@pytest.mark.parametrize("node", sorted(PARAMETERS))
def test_a_central_score_gives_its_band_only_when_it_names_one(node):
    """Back from FHIR (the feeder audits dropped, as after a site edit): each score of each parameter writes the band
    it names, a score two bands share writes nothing (a pulse score 1 is 41-50 or 91-110), and the total its count."""
    name, concept, display, bands = PARAMETERS[node]
    for score, named in bands.items():
        obs = {"resourceType": "Observation", "id": "n", "status": "final",
               "code": {"coding": [{"system": SNOMED, "code": TOTAL_CODE}]},
               "subject": {"reference": "Patient/1"}, "effectiveDateTime": "2026-02-01T10:00:00Z",
               "valueQuantity": {"value": 5, "unit": "ScoreOf", "system": "http://unitsofmeasure.org",
                                 "code": "{ScoreOf}"},
               "component": [{"code": {"coding": [{"system": SNOMED, "code": concept}]},
                              "valueQuantity": {"value": score, "system": "http://unitsofmeasure.org",
                                                "code": "{ScoreOf}"}}]}
        items = _items(_entry(from_fhir([obs], template_id="t").composition, NEWS2))
        assert items["at0028"] == {"_type": "DV_COUNT", "magnitude": 5}
        if len(named) == 1:
            [(code, rubric)] = named
            assert items[node]["value"] == score and items[node]["symbol"]["defining_code"]["code_string"] == code
            assert items[node]["symbol"]["value"] == rubric
        else:
            assert node not in items, (node, score)


def test_the_corpus_bundle_arrives_without_a_guessed_band_or_a_misread_local_code_and_comes_back_whole():
    """The NHS example's pulse and temperature scores (1 each) name two bands: the site gets neither (kept in the
    feeder audit); its ACVPU coding is a bare 'local' at0007 'Mentally alert', which is 'Pain' in acvpu.v1: not
    read as that at-code (the entry lacks its value, which the template's 1..1 makes the engine refuse).  FHIR ->
    openEHR -> FHIR gives every resource back unchanged."""
    resources = [e["resource"] for e in json.loads(BUNDLE.read_text())["entry"]]
    comp = from_fhir(copy.deepcopy(resources), template_id="t").composition
    items = _items(_entry(comp, NEWS2))
    assert {n: v["symbol"]["value"] for n, v in items.items() if v["_type"] == "DV_ORDINAL"} == {
        "at0006": "21-24", "at0029": "92-93", "at0034": "Air", "at0004": "111-219", "at0008": "Alert"}
    assert items["at0028"]["magnitude"] == 6
    assert _items(_entry(comp, ACVPU)) == {}
    comp["uid"] = {"_type": "OBJECT_VERSION_ID", "value": f"{uuid.uuid4()}::news2::1"}
    back = to_fhir(comp, **ARGS).resources
    for code in (TOTAL_CODE, ACVPU_CODE):
        [src] = _by_code(resources, code)
        [twin] = _by_code(back, code)
        assert [d for d in compare_clinical(src, {**twin, "subject": src["subject"]})
                if d["kind"] not in ("dictionary_item_added", "iterable_item_added")] == [], code


def test_an_acvpu_of_our_own_codes_comes_back_to_the_site():
    comp = _composition()
    [acvpu] = _by_code(to_fhir(comp, **ARGS).resources, ACVPU_CODE)
    acvpu.pop("extension", None)  # no residue: what FHIR alone says
    back = _items(_entry(from_fhir([acvpu], template_id="t").composition, ACVPU))
    assert back == {"at0004": _items(_entry(comp, ACVPU))["at0004"]}


@pytest.mark.integration
def test_hapi_validates_the_early_warning_observations(fhir_base_url):
    resources = to_fhir(_composition(), **ARGS).resources
    for code in (TOTAL_CODE, ACVPU_CODE):
        [obs] = _by_code(resources, code)
        assert hapi_errors(fhir_base_url, obs) == [], code


@pytest.mark.integration
def test_a_central_news2_reaches_ehrbase_under_the_corpus_template(ehrbase_urls):
    """The NEWS2 and ACVPU entries made from our own FHIR commit under the corpus template on a real CDR."""
    from sync.clients.openehr import OpenEHRClient, template_id_of

    resources = to_fhir(_composition(), **ARGS).resources
    wanted = _by_code(resources, TOTAL_CODE) + _by_code(resources, ACVPU_CODE)
    for r in wanted:
        r.pop("extension", None)
        r["identifier"] = []  # central-born: no source identifier of ours
    template = template_id_of(OPT.read_bytes())
    comp = from_fhir(wanted, template_id=template).composition
    with OpenEHRClient(ehrbase_urls[0]) as cdr:
        cdr.upload_template(OPT.read_bytes())
        ehr = cdr.create_ehr(subject_id=f"SYNNEWS{uuid.uuid4().hex[:8]}", subject_namespace="conflictdesk-test").ehr_id
        ref = cdr.create_composition(ehr, comp)  # canonical JSON: its archetype_details name the template
        stored = cdr.get_composition(ehr, ref.version_uid).content
    assert _items(_entry(stored, NEWS2))["at0028"]["magnitude"] == _items(_entry(comp, NEWS2))["at0028"]["magnitude"]
    assert _items(_entry(stored, ACVPU))["at0004"]["defining_code"]["code_string"] in ACVPU_CODES
