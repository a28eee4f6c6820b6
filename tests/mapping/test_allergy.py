"""Issue 17 row 2 (allergies): EVALUATION.adverse_reaction_risk.v2 <-> AllergyIntolerance, each
CLUSTER.adverse_reaction_event.v1 <-> one reaction (inline).  Compositions are built from the CKM archetypes'
node ids (tests/fixtures/corpus); the code tables are the archetype's at-codes and FHIR R4's required
value sets (allergyintolerance-clinical / -verification, criticality, category, type, reaction severity)."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conflictdesk.desk.render import resource_rows
from sync.mapping import compare_clinical, from_fhir, to_fhir, validate_fhir
from sync.mapping import datatypes as dt
from sync.mapping.engine import entry_skeleton
from sync.mapping.residue import strip
from sync.mapping.spec import registry

from .conftest import REPO_DIR
from .hapi import hapi_errors

# The rows this module proves (sync.mapping.coverage reads it; tests/mapping/test_coverage.py checks it).
COVERS = {"EVALUATION.adverse_reaction_risk.v2": "forward reverse hapi",
          "CLUSTER.adverse_reaction_event.v1": "forward reverse hapi"}

ARGS = dict(site="s", ehr_id="e", patient_ref="Patient/1")
RISK = "openEHR-EHR-EVALUATION.adverse_reaction_risk.v2"
EVENT = "openEHR-EHR-CLUSTER.adverse_reaction_event.v1"
CLIN = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
VER = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
SHELL = REPO_DIR / "tests/fixtures/oncology/oncology_encounter.composition.json"

# at-code -> FHIR code, per element (node id): the tables of the model file
STATUS = {"at0131": ("Active", "active"), "at0132": ("Inactive", "inactive")}
VERIFICATION = {"at0064": ("Unconfirmed", "unconfirmed"), "at0065": ("Confirmed", "confirmed"),
                "at0066": ("Refuted", "refuted")}
CRITICALITY = {"at0102": ("Low", "low"), "at0103": ("High", "high"), "at0124": ("Indeterminate", "unable-to-assess")}
CATEGORY = {"at0121": ("Food", "food"), "at0122": ("Medication", "medication")}
MECHANISM = {"at0059": ("Immune mediated", "allergy"), "at0060": ("Non-immune mediated", "intolerance")}
SEVERITY = {"at0011": ("Mild", "mild"), "at0012": ("Moderate", "moderate"), "at0013": ("Severe", "severe")}


def el(node, name, value):
    return {"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": name}, "archetype_node_id": node, "value": value}


def text(value):
    return {"_type": "DV_TEXT", "value": value}


def local(table, code):
    return dt.coded_text(table[code][0], "local", code)


def reaction(severity="at0013", manifestations=("Urticaria", "Bronchospasm"), certainty=True) -> dict:
    items = [el("at0001", "Specific substance", dt.coded_text("carboplatin", "RxNorm", "40048"))]
    items += [el("at0006", "Manifestation", text(m)) for m in manifestations]
    items += [el("at0007", "Reaction description", text("during the second infusion")),
              el("at0008", "Onset of reaction", {"_type": "DV_DATE_TIME", "value": "2025-05-02T11:20:00+02:00"})]
    if severity:
        items.append(el("at0010", "Severity of reaction", local(SEVERITY, severity)))
    if certainty:  # no FHIR home in reaction: residue
        items.append(el("at0002", "Certainty", dt.coded_text("Confirmed", "local", "at0005")))
    items += [el("at0017", "Route of exposure", text("Intravenous")), el("at0024", "Comment", text("infusion stopped"))]
    return {"_type": "CLUSTER", "name": text("Reaction event summary"), "archetype_node_id": EVENT,
            "archetype_details": {"_type": "ARCHETYPED", "archetype_id": {"_type": "ARCHETYPE_ID", "value": EVENT},
                                  "rm_version": "1.0.4"}, "items": items}


def risk(status="at0131", verification="at0065", criticality="at0103", category="at0122", mechanism="at0059",
         reactions=(None,), comment="premedicate before any platinum") -> dict:
    entry = entry_skeleton(registry()[RISK], "en")
    items = [el("at0002", "Substance", dt.coded_text("carboplatin", "RxNorm", "40048"))]
    for node, name, table, code in (("at0130", "Active/inactive status", STATUS, status),
                                    ("at0063", "Verification status", VERIFICATION, verification),
                                    ("at0101", "Criticality", CRITICALITY, criticality),
                                    ("at0120", "Category", CATEGORY | {"at0123": ("Other", None)}, category),
                                    ("at0058", "Reaction mechanism", MECHANISM | {"at0126": ("Indeterminate", None)},
                                     mechanism)):
        if code:
            items.append(el(node, name, local(table, code)))
    items.append(el("at0133", "Onset of first reaction", {"_type": "DV_DATE_TIME", "value": "2025-05-02T11:20:00+02:00"}))
    items += [reaction(**(r or {})) for r in reactions]
    if comment:
        items.append(el("at0006", "Comment", text(comment)))
    entry["data"] = {"_type": "ITEM_TREE", "name": text("Tree"), "archetype_node_id": "at0001", "items": items}
    entry["protocol"] = {"_type": "ITEM_TREE", "name": text("Tree"), "archetype_node_id": "at0042", "items": [
        el("at0062", "Last updated", {"_type": "DV_DATE_TIME", "value": "2025-05-03T09:00:00+02:00"})]}
    return entry


def composition(*entries) -> dict:
    comp = json.loads(SHELL.read_text(encoding="utf-8"))
    comp["content"] = list(entries)
    return comp


def mapped(comp) -> list[dict]:
    return [r for r in to_fhir(comp, **ARGS).resources if r["resourceType"] == "AllergyIntolerance"]


def trip(comp):
    resources = [r for r in to_fhir(comp, **ARGS).resources if r["resourceType"] not in ("Encounter", "Composition")]
    return resources, from_fhir(resources, template_id="t", base_composition=comp)


def code_of(cc):
    return [(c["system"], c["code"]) for c in cc["coding"]]


def test_an_allergy_with_its_reaction_maps_both_ways_exactly():
    comp = composition(risk())
    resources, back = trip(comp)
    [ai] = resources
    assert ai["patient"] == {"reference": "Patient/1"} and "subject" not in ai
    assert code_of(ai["clinicalStatus"]) == [(CLIN, "active")] and code_of(ai["verificationStatus"]) == [(VER, "confirmed")]
    assert (ai["criticality"], ai["category"], ai["type"]) == ("high", ["medication"], "allergy")
    assert ai["code"]["coding"][0]["code"] == "40048" and ai["onsetDateTime"] == "2025-05-02T11:20:00+02:00"
    assert ai["recordedDate"] == "2025-05-03T09:00:00+02:00" and ai["note"] == [{"text": "premedicate before any platinum"}]
    [r] = ai["reaction"]
    assert [m["text"] for m in r["manifestation"]] == ["Urticaria", "Bronchospasm"]
    assert (r["severity"], r["onset"], r["description"]) == ("severe", "2025-05-02T11:20:00+02:00", "during the second infusion")
    assert r["exposureRoute"] == {"text": "Intravenous"} and r["note"] == [{"text": "infusion stopped"}]
    assert validate_fhir(ai) == []
    assert compare_clinical(comp, back.composition) == [] and back.losses == []


@pytest.mark.parametrize("node,table,fhir", [
    ("status", STATUS, lambda ai: code_of(ai["clinicalStatus"])[0][1]),
    ("verification", VERIFICATION, lambda ai: code_of(ai["verificationStatus"])[0][1]),
    ("criticality", CRITICALITY, lambda ai: ai["criticality"]),
    ("category", CATEGORY, lambda ai: ai["category"][0]),
    ("mechanism", MECHANISM, lambda ai: ai["type"])])
def test_every_coded_value_maps_to_its_fhir_code_and_back(node, table, fhir):
    for at, (_, code) in table.items():
        comp = composition(risk(**{node: at}))
        [ai], back = trip(comp)
        assert fhir(ai) == code
        assert compare_clinical(comp, back.composition) == []


@pytest.mark.parametrize("at", sorted(SEVERITY))
def test_every_reaction_severity_maps_both_ways(at):
    comp = composition(risk(reactions=[{"severity": at}]))
    [ai], back = trip(comp)
    assert ai["reaction"][0]["severity"] == SEVERITY[at][1]
    assert compare_clinical(comp, back.composition) == []


def test_codes_fhir_has_no_equivalent_for_stay_in_the_residue():
    comp = composition(risk(category="at0123", mechanism="at0126", reactions=[None, {"severity": None}]))
    [ai], back = trip(comp)
    assert "category" not in ai and "type" not in ai and len(ai["reaction"]) == 2
    assert compare_clinical(comp, back.composition) == []


def test_a_central_allergy_keeps_what_the_archetype_holds():
    born = {"resourceType": "AllergyIntolerance", "id": "ai-1", "patient": {"reference": "Patient/p9"},
            "clinicalStatus": {"coding": [{"system": CLIN, "code": "active"}]},
            "verificationStatus": {"coding": [{"system": VER, "code": "unconfirmed"}]},
            "type": "intolerance", "category": ["food"], "criticality": "low",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "227493005", "display": "Cashew nuts"}]},
            "onsetDateTime": "2019-06-01", "note": [{"text": "reported by the patient"}],
            "reaction": [{"manifestation": [{"text": "Itching of mouth"}], "severity": "mild"}]}
    out = from_fhir([born], template_id="t")
    [entry] = out.composition["content"]
    assert entry["archetype_node_id"] == RISK
    assert [x for x in out.losses if not x.path.startswith("AllergyIntolerance/ai-1:")] == []
    comp = {**out.composition, "uid": {"_type": "OBJECT_VERSION_ID", "value": "a11e0000-0000-4000-8000-000000000017::x::1"}}
    [again] = mapped(comp)
    for element in ("clinicalStatus", "verificationStatus", "type", "category", "criticality", "code", "onsetDateTime",
                    "note", "reaction"):
        assert again[element] == born[element], element


def test_the_desk_titles_an_allergy_by_its_substance():
    [ai] = mapped(composition(risk()))
    rows = [(r.depth, r.label, r.value) for r in resource_rows(ai)]
    assert rows[0] == (0, "AllergyIntolerance", "carboplatin")
    assert (1, "criticality", "high") in rows


# ------------------------------------------------------------------ hypothesis
def _maybe(table):
    return st.one_of(st.none(), st.sampled_from(sorted(table)))


@st.composite
def risks(draw):
    reactions = [{"severity": draw(_maybe(SEVERITY)), "certainty": draw(st.booleans()),
                  "manifestations": draw(st.lists(st.sampled_from(["Urticaria", "Rash", "Anaphylaxis"]), max_size=2))}
                 for _ in range(draw(st.integers(0, 2)))]
    return risk(draw(_maybe(STATUS)), draw(_maybe(VERIFICATION)), draw(_maybe(CRITICALITY)),
                draw(_maybe(CATEGORY | {"at0123": 0})), draw(_maybe(MECHANISM | {"at0126": 0})), reactions,
                draw(st.one_of(st.none(), st.just("premedicate"))))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(risks(), min_size=1, max_size=2))
def test_round_trip_property(entries):
    comp = composition(*entries)
    resources, back = trip(comp)
    assert all(validate_fhir(r) == [] for r in resources)
    assert compare_clinical(comp, back.composition) == []
    again = mapped({**back.composition, "uid": comp["uid"]})
    assert [compare_clinical(strip(a), strip(b)) for a, b in zip(resources, again)] == [[] for _ in resources]


# ------------------------------------------------------------------ HAPI $validate
@pytest.mark.integration
def test_hapi_validates_allergies(fhir_base_url):
    for comp in (composition(risk()), composition(risk("at0132", "at0066", "at0124", "at0121", "at0060",
                                                       [{"severity": "at0011"}]))):
        [ai] = mapped(comp)
        assert hapi_errors(fhir_base_url, ai) == []
