"""What mCODE STU4 (with its US Core constraints) requires beyond the rows' own content:
MedicationRequest.requester (us-core-21), Condition.category problem-list-item, TNM category and
method on the stage group and on every T/N/M member.  Each stays exact both ways."""
import copy
import json

from sync.mapping import compare_clinical, from_fhir, rmpath, to_fhir, to_openehr
from sync.mapping import datatypes as dt
from sync.mapping.residue import strip

from .conftest import REPO_DIR

ONCOLOGY = REPO_DIR / "tests/fixtures/oncology/oncology_encounter.composition.json"
ARGS = dict(site="s", ehr_id="e", patient_ref="Patient/1")
MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"
UICC = {"system": "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl", "code": "C188404",
        "display": "Union for International Cancer Control Stage"}
IMAGING = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "imaging",
                       "display": "Imaging"}]}
DAR = {"extension": [{"url": dt.DAR_EXT, "valueCode": "unknown"}]}


def _fixture() -> dict:
    return json.loads(ONCOLOGY.read_text(encoding="utf-8"))


def _of(resources, rtype, profile=None):
    return [r for r in resources if r["resourceType"] == rtype
            and (profile is None or MCODE + profile in (r.get("meta") or {}).get("profile", []))]


def _round_trip(comp: dict) -> tuple[dict, list[dict]]:
    res = to_fhir(comp, **ARGS).resources
    back = to_openehr(res, template_id="t", base_composition=comp)
    return back, res


def _order(comp: dict) -> dict:
    return next(e for _, e in rmpath.entries(comp) if "medication_order" in e["archetype_node_id"])


# ------------------------------------------------------------------ requester
def test_the_requester_is_the_composer_and_the_round_trip_stays_exact():
    comp = _fixture()
    back, res = _round_trip(comp)
    [mr] = _of(res, "MedicationRequest")
    assert mr["requester"] == {"display": "Dr. Ada Synthetic"}
    assert compare_clinical(comp, back) == []
    assert "other_participations" not in _order(back)  # composer-derived: nothing invented in openEHR


def test_an_ordering_participation_wins_over_the_composer():
    comp = _fixture()
    _order(comp)["other_participations"] = [
        {"_type": "PARTICIPATION", "function": {"_type": "DV_TEXT", "value": "witness"},
         "performer": {"_type": "PARTY_IDENTIFIED", "name": "Nurse N"}},
        {"_type": "PARTICIPATION", "function": {"_type": "DV_TEXT", "value": "Orderer"},
         "performer": {"_type": "PARTY_IDENTIFIED", "name": "Dr. O",
                       "external_ref": {"_type": "PARTY_REF", "namespace": "hospital-staff", "type": "PERSON",
                                        "id": {"_type": "GENERIC_ID", "value": "4711", "scheme": "hospital-staff"}}}}]
    back, res = _round_trip(comp)
    [mr] = _of(res, "MedicationRequest")
    assert mr["requester"]["display"] == "Dr. O" and mr["requester"]["identifier"]["value"] == "4711"
    assert compare_clinical(comp, back) == []


def test_without_a_usable_party_the_requester_is_data_absent_and_reads_back_as_nothing():
    comp = _fixture()
    comp["composer"] = {"_type": "PARTY_SELF"}
    back, res = _round_trip(comp)
    [mr] = _of(res, "MedicationRequest")
    assert mr["requester"] == DAR
    assert compare_clinical(comp, back) == []
    assert "other_participations" not in _order(back)


def test_a_fhir_born_requester_becomes_a_participation_and_comes_back():
    comp = _fixture()
    [mr] = _of(to_fhir(comp, **ARGS).resources, "MedicationRequest")
    born = strip(copy.deepcopy(mr))
    born.pop("identifier")
    born["id"] = "mr-1"
    born["requester"] = {"reference": "Practitioner/p-7", "display": "Dr. Fhir"}
    out = from_fhir([born], template_id="t")
    [part] = _order(out.composition)["other_participations"]
    assert part["function"]["value"] == "requester" and part["performer"]["name"] == "Dr. Fhir"
    assert not [x for x in out.losses if "requester" in x.path]
    again = {**out.composition, "uid": {"value": "aaaaaaaa-0000-4000-8000-000000000001::x::1"}}
    [twin] = _of(to_fhir(again, **ARGS).resources, "MedicationRequest")
    assert twin["requester"] == born["requester"]


def test_an_edited_requester_wins_over_the_composer_residue():
    comp = _fixture()
    res = to_fhir(comp, **ARGS).resources
    [mr] = _of(res, "MedicationRequest")
    mr["requester"] = {"display": "Dr. Edited"}
    out = from_fhir(res, template_id="t", base_composition=comp)
    [part] = _order(out.composition)["other_participations"]
    assert part["performer"]["name"] == "Dr. Edited"
    assert any(x.kind == "stale" for x in out.losses)


# ------------------------------------------------------------------ condition category
def test_a_diagnosis_is_a_problem_list_item():
    res = to_fhir(_fixture(), **ARGS).resources
    for cond in _of(res, "Condition"):
        assert {"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item",
                "display": "Problem List Item"} in [c for cc in cond["category"] for c in cc["coding"]]


# ------------------------------------------------------------------ TNM category and method
def test_tnm_observations_carry_category_and_the_clusters_staging_system():
    res = to_fhir(_fixture(), **ARGS).resources
    groups = _of(res, "Observation", "mcode-tnm-stage-group")
    assert len(groups) == 2
    by_ref = {f"Observation/{r['id']}": r for r in res}
    for group in groups:
        assert group["category"] == [IMAGING]
        assert group["method"]["text"] == "UICC TNM 8th edition" and group["method"]["coding"] == [UICC]
        members = [by_ref[m["reference"]] for m in group["hasMember"]]
        tnm = [m for m in members if m["code"]["coding"][0]["code"] != "33732-9"]  # the grade G is no category
        assert len(tnm) == 3 and len(members) == 4
        for m in tnm:
            assert m["category"] == [IMAGING] and m["method"] == group["method"]


def test_a_cluster_without_edition_gets_a_data_absent_method_that_reads_back_as_nothing():
    comp = _fixture()
    for _, node in rmpath.walk(comp):
        if str(node.get("archetype_node_id", "")).startswith("openEHR-EHR-CLUSTER.tnm"):
            node["items"] = [i for i in node["items"] if i.get("archetype_node_id") != "at0032"]
    back, res = _round_trip(comp)
    tnm = [r for r in res if r["resourceType"] == "Observation" and "method" in r]
    assert len(tnm) == 8 and all(r["method"] == DAR for r in tnm)
    assert compare_clinical(comp, back) == []


def test_ajcc_editions_map_to_the_mcode_staging_method_value_set():
    from sync.mapping.hooks_tnm import method_coding
    assert method_coding("AJCC 8th edition")["code"] == "897275008"
    assert method_coding("AJCC Cancer Staging Manual, 7th edition")["code"] == "443830009"
    assert method_coding("UICC TNM Classification, 8th edition") == UICC
    assert method_coding("local staging") is None


# ------------------------------------------------------------------ con-4 and the profile's code
def test_an_abatement_only_goes_with_a_status_that_allows_it_and_the_date_still_comes_back():
    from .conftest import CORPUS, load
    comp = load(CORPUS / "openehr/compositions/ips.composition.json")  # 'Active' + a resolution date
    back, res = _round_trip(comp)
    conds = _of(res, "Condition")
    assert any("abatementDateTime" in c for c in conds)
    for c in conds:
        if "abatementDateTime" in c:  # con-4
            assert c["clinicalStatus"]["coding"][0]["code"] in ("inactive", "resolved", "remission")
    assert compare_clinical(comp, back) == []


def test_a_staged_diagnosis_without_a_name_declares_no_primary_cancer_profile():
    comp = _fixture()
    diag = next(e for _, e in rmpath.entries(comp) if "problem_diagnosis" in e["archetype_node_id"])
    diag["data"]["items"] = [i for i in diag["data"]["items"] if i.get("archetype_node_id") != "at0002"]
    [cond] = _of(to_fhir(comp, **ARGS).resources, "Condition")
    assert "code" not in cond and MCODE + "mcode-primary-cancer-condition" not in (cond.get("meta") or {}).get(
        "profile", [])
