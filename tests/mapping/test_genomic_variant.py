"""Issue 17 genomics row: CLUSTER.genomic_variant_result.v1 in a laboratory result's 'Test result' slot <-> an
mCODE STU4 genomic variant Observation in DiagnosticReport.result (hooks_genomics.py).  The LOINC codes and
code systems are those of mCODE STU4's genomic variant examples; the node ids are the CKM archetype's
(tests/fixtures/corpus).  The composition is built here (no template or corpus composition holds one)."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.mapping import compare_clinical, from_fhir, to_fhir, validate_fhir
from sync.mapping import datatypes as dt
from sync.mapping.engine import entry_skeleton
from sync.mapping.hooks_genomics import PROFILE
from sync.mapping.spec import registry

from .hapi import hapi_errors

# HAPI has no LOINC content, so the Variant's required binding of value to http://loinc.org/vs/LL1971-2 (an
# implicit LOINC list value set) cannot be expanded: every answer, mCODE's own example's too, is "not in the
# value set".  The test below proves the example hits it; only that error, at that location, is set aside.
LOINC_ANSWER_LIST = "['Observation.value.ofType(CodeableConcept)']: "

COVERS = {"CLUSTER.genomic_variant_result.v1": "forward reverse hapi",
          "CLUSTER.genetic_variant_presence.v0": "forward reverse hapi"}

LAB = "openEHR-EHR-OBSERVATION.laboratory_test_result.v1"
VARIANT = "openEHR-EHR-CLUSTER.genomic_variant_result.v1"
PRESENCE = "openEHR-EHR-CLUSTER.genetic_variant_presence.v0"
# the archetype's LOINC term bindings of its findings (LL1971-2 answers)
FINDINGS = {"at0004": ("Present", "LA9633-4"), "at0005": ("Absent", "LA9634-2"), "at0006": ("No call", "LA18198-4"),
            "at0007": ("Indeterminate", "LA11884-6")}
LOINC, HGVS = "http://loinc.org", "http://varnomen.hgvs.org"


def text(v):
    return {"_type": "DV_TEXT", "value": v}


def el(node, name, value):
    return {"_type": "ELEMENT", "name": text(name), "archetype_node_id": node, "value": value}


def parsable(v, formalism="HGVS"):
    return {"_type": "DV_PARSABLE", "value": v, "formalism": formalism}


def variant(gene="BRCA1", dna="NM_007294.4:c.5266dup", protein="NP_009225.1:p.(Gln1756ProfsTer74)",
            acmg=True, formalism="HGVS", transcripts=1):
    transcript = [el("at0010", "DNA region name", text("exon 20"))]
    if dna:
        transcript.append(el("at0011", "DNA change", parsable(dna, formalism)))
    if protein:
        transcript.append(el("at0012", "Amino acid change", parsable(protein, formalism)))
    if gene:
        transcript.append({"_type": "CLUSTER", "archetype_node_id": "at0019", "name": text("Gene"),
                           "items": [el("at0020", "Gene symbol", text(gene)),
                                     el("at0021", "Gene name", text("BRCA1 DNA repair associated"))]})
    if acmg:
        transcript.append(el("at0058", "ACMG classification", dt.coded_text("Pathogenic", "local", "at0071")))
    items = [el("at0101", "Variant", parsable("NC_000017.11:g.43057063dup"))]
    items += [{"_type": "CLUSTER", "archetype_node_id": "at0008", "name": text("Transcript"), "items": list(transcript)}
              for _ in range(transcripts)]
    return {"_type": "CLUSTER", "name": text("Genomic variant result"), "archetype_node_id": VARIANT,
            "archetype_details": {"_type": "ARCHETYPED", "archetype_id": {"_type": "ARCHETYPE_ID", "value": VARIANT},
                                  "rm_version": "1.0.4"}, "items": items}


def presence(finding="at0004", name="BRAF V600E", comment="Tumour content 40 %"):
    items = [el("at0001", "Variant name", text(name))] if name else []
    if finding:
        items.append(el("at0002", "Finding", dt.coded_text(FINDINGS[finding][0], "local", finding)))
    if comment or not items:
        items.append(el("at0003", "Comment", text(comment or "none")))
    return {"_type": "CLUSTER", "name": text("Genetic variant presence"), "archetype_node_id": PRESENCE,
            "archetype_details": {"_type": "ARCHETYPED", "archetype_id": {"_type": "ARCHETYPE_ID", "value": PRESENCE},
                                  "rm_version": "1.0.4"}, "items": items}


def report(*variants, status=("at0038", "Final")):
    e = entry_skeleton(registry()[LAB], "en")
    items = [el("at0005", "Test name", text("Hereditary breast cancer gene panel"))]
    if status:
        items.append(el("at0073", "Overall test status", dt.coded_text(status[1], "local", status[0])))
    when = {"_type": "DV_DATE_TIME", "value": "2025-05-02T10:00:00+02:00"}
    e["data"] = {"_type": "HISTORY", "archetype_node_id": "at0001", "name": text("Event Series"), "origin": when,
                 "events": [{"_type": "POINT_EVENT", "archetype_node_id": "at0002", "name": text("Any event"),
                             "time": when, "data": {"_type": "ITEM_TREE", "archetype_node_id": "at0003",
                                                    "name": text("Tree"), "items": items + list(variants)}}]}
    return {"_type": "COMPOSITION", "name": text("Molecular pathology"),
            "uid": {"_type": "OBJECT_VERSION_ID", "value": "9d0a7c35-0000-4000-8000-00000000a017::gen::1"},
            "archetype_node_id": "openEHR-EHR-COMPOSITION.report.v1",
            "language": dt.code_phrase("ISO_639-1", "en"), "territory": dt.code_phrase("ISO_3166-1", "DE"),
            "category": dt.coded_text("event", "openehr", "433"), "composer": {"_type": "PARTY_SELF"}, "content": [e]}


def fwd(comp):
    return to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources


def variants_of(resources):
    return [r for r in resources if r["resourceType"] == "Observation"
            and any(c.get("code") == "69548-6" for c in r["code"]["coding"])]


def components(obs):
    return {c["code"]["coding"][0]["code"]: c["valueCodeableConcept"] for c in obs.get("component") or []}


def test_a_variant_maps_to_the_mcode_genomic_variant_and_back_exactly():
    comp = report(variant(), variant(gene="TP53", dna="NM_000546.6:c.743G>A", protein="NP_000537.3:p.(Arg248Gln)"))
    out = fwd(comp)
    first, second = variants_of(out)
    [rep] = [r for r in out if r["resourceType"] == "DiagnosticReport"]
    assert {r["reference"] for r in rep["result"]} == {f"Observation/{first['id']}", f"Observation/{second['id']}"}
    assert PROFILE in first["meta"]["profile"] and first["status"] == rep["status"] == "final"
    assert first["category"][0]["coding"][0]["code"] == "laboratory"
    got = components(first)
    assert got["48018-6"] == {"text": "BRCA1"}
    assert got["48004-6"]["coding"] == [{"system": HGVS, "code": "NM_007294.4:c.5266dup"}]
    assert got["48005-3"]["coding"] == [{"system": HGVS, "code": "NP_009225.1:p.(Gln1756ProfsTer74)"}]
    assert components(second)["48018-6"] == {"text": "TP53"}
    assert "valueCodeableConcept" not in first  # the presence answer is not recorded by this archetype
    for r in out:
        assert validate_fhir(r) == []
    back = from_fhir(out, template_id="t", base_composition=comp)
    assert compare_clinical(comp, back.composition) == [] and back.losses == []


def test_without_a_base_the_variants_come_back_from_their_observations():
    comp = report(variant(acmg=False, formalism="hgvs", transcripts=2))
    out = fwd(comp)
    back = from_fhir(out, template_id="t")
    assert compare_clinical(comp["content"][0], back.composition["content"][0]) == []


def test_a_central_variant_lands_in_a_transcript_cluster():
    born = {"resourceType": "Observation", "id": "gv-1", "status": "final", "meta": {"profile": [PROFILE]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": "69548-6"}]}, "subject": {"reference": "Patient/p9"},
            "effectiveDateTime": "2025-02-03T09:00:00+01:00", "component": [
                {"code": {"coding": [{"system": LOINC, "code": "48018-6"}]}, "valueCodeableConcept": {
                    "coding": [{"system": "http://www.genenames.org", "code": "HGNC:11389", "display": "STK11"}]}},
                {"code": {"coding": [{"system": LOINC, "code": "48004-6"}]}, "valueCodeableConcept": {
                    "coding": [{"system": HGVS, "code": "NM_000455.5:c.725G>A"}]}}]}
    rep = {"resourceType": "DiagnosticReport", "id": "r-1", "status": "final", "subject": {"reference": "Patient/p9"},
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}],
           "code": {"coding": [{"system": LOINC, "code": "26436-6"}]}, "result": [{"reference": "Observation/gv-1"}]}
    out = from_fhir([rep, born], template_id="t")
    tree = out.composition["content"][0]["data"]["events"][0]["data"]["items"]
    [cluster] = [i for i in tree if i["archetype_node_id"] == VARIANT]
    [transcript] = cluster["items"]
    values = {i["archetype_node_id"]: i for i in transcript["items"]}
    assert values["at0011"]["value"]["value"] == "NM_000455.5:c.725G>A"
    assert values["at0019"]["items"][0]["value"]["value"] == "STK11"
    assert [x for x in out.losses if x.kind != "stale"] == []


@pytest.mark.parametrize("finding", sorted(FINDINGS))
def test_a_presence_finding_maps_to_its_loinc_answer_and_back(finding):
    comp = report(presence(finding), variant())
    out = fwd(comp)
    [obs] = [o for o in variants_of(out) if "valueCodeableConcept" in o]
    assert PROFILE in obs["meta"]["profile"]
    assert obs["valueCodeableConcept"]["coding"] == [
        {"system": LOINC, "code": FINDINGS[finding][1], "display": FINDINGS[finding][0]}]
    assert components(obs)["81252-9"]["text"] == "BRAF V600E"
    assert "note" not in obs  # the comment travels in the residue
    back = from_fhir(out, template_id="t", base_composition=comp)
    assert compare_clinical(comp, back.composition) == [] and back.losses == []
    again = from_fhir(out, template_id="t")  # no base: the code and the value tell the two clusters apart
    assert compare_clinical(comp["content"][0], again.composition["content"][0]) == []


# ------------------------------------------------------------------ hypothesis
@st.composite
def reports(draw):
    opt = st.one_of(st.none(), st.sampled_from(["NM_000546.6:c.743G>A", "NM_004333.6:c.1799T>A"]))
    found = [presence(finding=draw(st.one_of(st.none(), st.sampled_from(sorted(FINDINGS)))),
                      name=draw(st.one_of(st.none(), st.just("KRAS G12C"))),
                      comment=draw(st.one_of(st.none(), st.just("low coverage"))))
             for _ in range(draw(st.integers(0, 1)))]
    return report(*found, *[variant(gene=draw(st.one_of(st.none(), st.sampled_from(["TP53", "BRAF"]))), dna=draw(opt),
                            protein=draw(st.one_of(st.none(), st.just("NP_004324.2:p.(Val600Glu)"))),
                            acmg=draw(st.booleans()), formalism=draw(st.sampled_from(["HGVS", "text/plain"])),
                            transcripts=draw(st.integers(0, 2)))
                    for _ in range(draw(st.integers(1, 2)))],
                  status=draw(st.sampled_from([None, ("at0038", "Final"), ("at0037", "Preliminary")])))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reports())
def test_round_trip_property(comp):
    out = fwd(comp)
    for r in out:
        assert validate_fhir(r) == []
    back = from_fhir(out, template_id="t", base_composition=comp)
    assert compare_clinical(comp, back.composition) == []


# ------------------------------------------------------------------ HAPI $validate
@pytest.mark.integration
def test_hapi_validates_the_genomic_variant_with_its_profile(fhir_base_url):
    for obs in variants_of(fwd(report(variant(), variant(gene=None, protein=None, transcripts=2)))):
        assert PROFILE in obs["meta"]["profile"]
        assert hapi_errors(fhir_base_url, obs) == []


@pytest.mark.integration
def test_hapi_validates_a_presence_finding_with_its_profile(fhir_base_url):
    # mCODE STU4's example genomic-variant-somatic-single-nucleotide: its value and code, nothing else
    own = {"resourceType": "Observation", "status": "final", "meta": {"profile": [PROFILE]},
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                     "code": "laboratory"}]}],
           "code": {"coding": [{"system": LOINC, "code": "69548-6"}]}, "subject": {"reference": "Patient/1"},
           "valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA9633-4", "display": "Present"}]}}
    assert [e.startswith(LOINC_ANSWER_LIST) for e in hapi_errors(fhir_base_url, own)] == [True]
    for finding in sorted(FINDINGS):
        [obs] = [o for o in variants_of(fwd(report(presence(finding)))) if "valueCodeableConcept" in o]
        assert PROFILE in obs["meta"]["profile"]
        assert [e for e in hapi_errors(fhir_base_url, obs) if not e.startswith(LOINC_ANSWER_LIST)] == []
