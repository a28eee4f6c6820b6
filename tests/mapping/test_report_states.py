"""mapping_report tells the truth: every file is counted and ends in exactly one state.

round-tripped / partial / nothing mapped / skipped / failed, each from what the mapping really does: the
openEHR round trip maps the FHIR resources back without the source composition, the FHIR round trip goes
FHIR -> openEHR -> FHIR and compares each resource with its twin; a difference no loss declares fails.
"""
from __future__ import annotations

import copy
import json
import re
import shutil

import pytest

from sync.mapping import report as report_mod
from sync.mapping import residue, rmpath, to_fhir
from sync.mapping.report import STATES, run

from .conftest import CORPUS, REPO_DIR, load

COMPOSITIONS = CORPUS / "openehr" / "compositions"
TEMPLATES = CORPUS / "openehr" / "templates"
BODY_TEMP = COMPOSITIONS / "encounter_body_temperature_multi.composition.json"
ONCOLOGY = REPO_DIR / "tests" / "fixtures" / "oncology" / "oncology_encounter.composition.json"
SUMMARY = re.compile(r"^\d+ files, \d+ converted, \d+ round-tripped, \d+ partial, \d+ nothing mapped, "
                     r"\d+ skipped, \d+ failed$")


def _write(path, doc):
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _one(path, **kw):
    [rec] = run([path], **kw).records
    return rec


def _heart_rate(**extra) -> dict:
    return {"resourceType": "Observation", "id": "hr-1", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
            "subject": {"reference": "Patient/1"}, "effectiveDateTime": "2024-01-01T10:00:00Z",
            "valueQuantity": {"value": 70, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
            **extra}


def _fhir_born_observations() -> list[dict]:
    """Our own body temperature Observations, made FHIR-born: no source identifier, no residue."""
    comp = {**load(BODY_TEMP), "uid": {"value": "11111111-0000-4000-8000-000000000001::s::1"}}
    out = []
    for i, r in enumerate(x for x in to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources
                          if x["resourceType"] == "Observation"):
        r = residue.strip(r)
        r.pop("identifier")
        out.append({**r, "id": f"born-{i}"})
    return out


# ------------------------------------------------------------------ counting
def test_every_file_is_counted_once_and_the_summary_names_every_state(tmp_path):
    shutil.copy(CORPUS / "openehr" / "archetypes" / "openEHR-EHR-OBSERVATION.ecog.v2.adl", tmp_path)
    (tmp_path / "notes.md").write_text("# notes")
    (tmp_path / "broken.json").write_text("{")
    _write(tmp_path / "other.json", {"hello": "world"})
    shutil.copy(BODY_TEMP, tmp_path)
    shutil.copy(CORPUS / "fhir" / "provenance_example.json", tmp_path)
    rep = run([tmp_path])
    assert len(rep.records) == 6 == len(list(tmp_path.iterdir()))
    assert all(r.state in STATES for r in rep.records)
    assert sum(rep.counts[s] for s in STATES) == rep.counts["files"] == 6
    assert SUMMARY.match(rep.summary), rep.summary
    states = {r.file.rsplit("/", 1)[-1]: r.state for r in rep.records}
    assert states == {"openEHR-EHR-OBSERVATION.ecog.v2.adl": "skipped", "notes.md": "skipped",
                      "broken.json": "failed", "other.json": "skipped",
                      BODY_TEMP.name: "round-tripped", "provenance_example.json": "nothing mapped"}
    assert rep.summary == "6 files, 1 converted, 1 round-tripped, 0 partial, 1 nothing mapped, 3 skipped, 1 failed"


# ------------------------------------------------------------------ round-tripped
def test_a_composition_whose_round_trip_is_equal_is_round_tripped_and_lists_its_residue():
    rec = _one(BODY_TEMP)
    assert rec.state == "round-tripped" and rec.format == "canonical"
    assert rec.differences == [] and rec.validation == []
    assert rec.losses and {x["travels"] for x in rec.losses} == {"residue"}  # comes back: still round-tripped
    assert {r["resourceType"] for r in rec.resources} >= {"Observation", "Encounter", "Composition"}


def test_fhir_that_comes_back_whole_is_round_tripped(tmp_path):
    entries = [{"resource": r} for r in _fhir_born_observations()]
    doc = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    rec = _one(_write(tmp_path / "obs.bundle.json", doc))
    assert rec.format == "fhir" and rec.state == "round-tripped", rec.line()
    assert rec.losses == [] and rec.differences == []


# ------------------------------------------------------------------ partial
def test_an_unmapped_entry_makes_a_composition_partial_and_is_listed_as_dropped(tmp_path):
    comp = load(BODY_TEMP)
    other = copy.deepcopy(comp["content"][0])
    other["archetype_node_id"] = "openEHR-EHR-OBSERVATION.not_mapped_here.v1"
    comp["content"].append(other)
    rec = _one(_write(tmp_path / "c.json", comp))
    assert rec.state == "partial", rec.line()
    assert "openEHR-EHR-OBSERVATION.not_mapped_here.v1" in rec.unmapped["archetypes"]
    [lost] = [x for x in rec.losses if "not_mapped_here" in x["path"]]
    assert lost["travels"] == "dropped" and "no model mapping" in lost["reason"]


def test_the_header_of_a_root_without_a_model_file_is_the_document_and_comes_back(tmp_path):
    """A report, a report-result, a case...: the FHIR Composition of every row, no Encounter (none is named);
    the rest of the header rides in its residue."""
    comp = load(BODY_TEMP)
    comp["archetype_node_id"] = "openEHR-EHR-COMPOSITION.report.v1"  # no composition-level model file
    comp["context"]["other_context"] = {"_type": "ITEM_TREE", "archetype_node_id": "at0001",
                                        "name": {"_type": "DV_TEXT", "value": "Tree"},
                                        "items": [{"_type": "ELEMENT", "archetype_node_id": "at0002",
                                                   "name": {"_type": "DV_TEXT", "value": "Report ID"},
                                                   "value": {"_type": "DV_TEXT", "value": "R-2024-17"}}]}
    rec = _one(_write(tmp_path / "c.json", comp))
    assert rec.state == "round-tripped", rec.line()
    assert not [x for x in rec.losses if x["travels"] == "dropped"]
    assert any(x["path"].startswith("/context/other_context") and x["travels"] == "residue" for x in rec.losses)


def test_a_header_whose_root_is_no_composition_archetype_is_declared_dropped(tmp_path):
    comp = load(BODY_TEMP)
    comp["archetype_node_id"] = "openEHR-EHR-OBSERVATION.body_temperature.v2"  # no COMPOSITION: no header row
    rec = _one(_write(tmp_path / "c.json", comp))
    assert rec.state == "partial", rec.line()
    assert {"path": "/", "travels": "dropped"}.items() <= next(x for x in rec.losses if x["path"] == "/").items()


def test_fhir_with_an_element_no_archetype_holds_round_trips_through_the_feeder_audit(tmp_path):
    """pulse.v2 has no performer: the entry's feeder audit keeps it and gives it back (issue 21)."""
    rec = _one(_write(tmp_path / "hr.json", _heart_rate(performer=[{"reference": "Practitioner/1"}])))
    assert rec.state == "round-tripped", rec.line()
    assert rec.losses == [] and rec.differences == []


def test_resources_no_mapping_reads_are_declared_and_named_by_type(tmp_path):
    doc = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": _heart_rate()}, {"resource": {"resourceType": "Practitioner", "id": "p1"}}]}
    rec = _one(_write(tmp_path / "b.json", doc))
    assert rec.state == "partial", rec.line()
    assert "Practitioner" in rec.unmapped["resource_types"]
    assert any(x["path"] == "Practitioner/p1" and x["travels"] == "dropped" for x in rec.losses)


# ------------------------------------------------------------------ nothing mapped
def test_a_fhir_file_no_mapping_reads_is_nothing_mapped():
    rec = _one(CORPUS / "fhir" / "provenance_example.json")
    assert rec.state == "nothing mapped" and rec.unmapped["resource_types"] == ["Provenance"]
    assert not rec.converted
    assert "reads Provenance" in rec.why and "claims" not in rec.why


def test_an_observation_no_row_claims_is_nothing_mapped_naming_its_code(tmp_path):
    """Observations are read (by code): one of a kind no file claims is said to be unclaimed, with its code, not
    'no mapping reads Observation'."""
    f = tmp_path / "status.json"
    f.write_text(json.dumps({"resourceType": "Observation", "id": "ds", "status": "final",
                             "code": {"coding": [{"system": "http://loinc.org", "code": "97509-4"}]},
                             "subject": {"reference": "Patient/1"}}))
    rec = _one(f)
    assert rec.state == "nothing mapped"
    assert "claims Observation http://loinc.org|97509-4" in rec.why and "reads" not in rec.why


def test_a_composition_of_unmapped_entries_is_nothing_mapped(tmp_path):
    comp = load(BODY_TEMP)
    comp["archetype_node_id"] = "openEHR-EHR-COMPOSITION.report.v1"
    for e in comp["content"]:
        e["archetype_node_id"] = "openEHR-EHR-OBSERVATION.not_mapped_here.v1"
    rec = _one(_write(tmp_path / "c.json", comp))
    assert rec.state == "nothing mapped" and rec.resources == []


# ------------------------------------------------------------------ skipped
def test_an_archetype_definition_is_counted_as_skipped():
    rec = _one(CORPUS / "openehr" / "archetypes" / "openEHR-EHR-OBSERVATION.ecog.v2.adl")
    assert (rec.format, rec.state) == ("adl", "skipped") and "archetype definition" in rec.why


def test_unknown_formats_are_skipped_with_why(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    _write(tmp_path / "b.json", [1, 2])
    recs = run([tmp_path]).records
    assert [(r.state, r.why.split(" (")[0]) for r in recs] == [("skipped", "unknown format")] * 2


def test_a_flat_file_without_its_opt_is_skipped_no_opt():
    rec = _one(COMPOSITIONS / "vital_signs_ehrn.flat.json")
    assert (rec.format, rec.state) == ("flat", "skipped") and rec.why.startswith("no OPT")


def test_a_flat_file_with_keys_its_template_does_not_define_is_skipped_naming_them():
    # EHRbase refuses it too: 400 "Could not consume Parts [...]" (tests/integration/test_flat_vs_ehrbase.py)
    rec = _one(COMPOSITIONS / "kds_procedure.flat.json", opts=[TEMPLATES / "kds_procedure.opt"])
    assert rec.state == "skipped" and rec.why.startswith("FLAT keys the template does not define: ")
    assert "kds_prozedur/prozedur:0/körperstelle:0|code" in rec.why


def test_a_flat_file_with_its_opt_is_converted():
    rep = run([TEMPLATES / "vital_signs_ehrn.opt", COMPOSITIONS / "vital_signs_ehrn.flat.json"])
    flat = next(r for r in rep.records if r.format == "flat")
    assert flat.state in ("round-tripped", "partial") and flat.resources


# ------------------------------------------------------------------ failed
def test_invalid_fhir_fails(tmp_path):
    comp = load(BODY_TEMP)
    [q] = [n["value"] for _, n in rmpath.walk({"content": comp["content"]})
           if (n.get("value") or {}).get("_type") == "DV_QUANTITY"][:1]
    q["units"] = "degrees Celsius"  # not UCUM: the vital-signs profile needs a UCUM code
    rec = _one(_write(tmp_path / "c.json", comp))
    assert rec.state == "failed" and "INVALID" in rec.why
    assert any("UCUM" in m for m in rec.validation)


def test_a_crash_fails_naming_the_error(tmp_path):
    bad = load(ONCOLOGY)
    vitals = next(e for e in bad["content"] if e["archetype_node_id"].endswith("blood_pressure.v2"))
    del vitals["data"]["events"]  # a mapped entry without any event cannot be converted
    rec = _one(_write(tmp_path / "broken.composition.json", bad))
    assert rec.state == "failed" and rec.why.startswith("MappingError")


def test_a_fhir_file_whose_round_trip_differs_is_failed(tmp_path, monkeypatch):
    """The way back loses valueQuantity and nothing declares it: the comparison must catch it."""
    real = report_mod.to_fhir

    def lossy(*a, **kw):
        out = real(*a, **kw)
        for r in out.resources:
            r.pop("valueQuantity", None)
        return out

    monkeypatch.setattr(report_mod, "to_fhir", lossy)
    rec = _one(_write(tmp_path / "hr.json", _heart_rate()))
    assert rec.state == "failed", rec.line()
    assert {"path": "Observation/hr-1:valueQuantity", "kind": "dictionary_item_removed"} in rec.differences
    assert "round trip DIFFERENT" in rec.why


def test_an_openehr_round_trip_difference_no_loss_declares_is_failed(monkeypatch):
    real = report_mod.map_back

    def lossy(*a, **kw):
        entries, header = real(*a, **kw)
        for e in entries:
            for _, n in rmpath.walk(e):
                if (n.get("value") or {}).get("_type") == "DV_QUANTITY":
                    n["value"]["magnitude"] += 1
        return entries, header

    monkeypatch.setattr(report_mod, "map_back", lossy)
    rec = _one(BODY_TEMP)
    assert rec.state == "failed"
    assert any(d["path"].endswith("value.magnitude") and d["kind"] == "values_changed" for d in rec.differences)


# ------------------------------------------------------------------ templates
def _node(rec, name: str, under: str = "") -> dict:
    return next(n for n in rec.nodes if n["name"] == name and under in n["path"])


def test_template_nodes_are_classed_by_where_their_value_ends():
    rec = _one(TEMPLATES / "vital_signs_ehrn.opt")
    assert rec.format == "opt" and rec.template_id == "EHRN Vital signs.v2"
    assert rec.state == "partial"  # some entries have no model mapping: their nodes are dropped, declared
    assert _node(rec, "Systolic", "blood_pressure.v2")["class"] == "mapped"
    assert _node(rec, "Tenant ID", "ehrn_metadata")["class"] == "residue"  # context detail, on the Encounter
    rate = _node(rec, "Rate", "respiration.v1")  # respiration.v1: no model file (ours is respiration.v2)
    assert rate["class"] == "dropped" and "no model mapping" in rate["reason"]
    assert _node(rec, "Synopsis", "clinical_synopsis")["class"] == "mapped"  # issue 18: ClinicalImpression.summary
    assert all(n["declared"] for n in rec.nodes)
    assert len({(n["path"], n["name"]) for n in rec.nodes}) == len(rec.nodes)  # one entry per template node


def test_a_template_node_dropped_without_declaration_fails_the_template(monkeypatch):
    real = report_mod.map_back

    def drops_systolic(*a, **kw):
        entries, header = real(*a, **kw)
        for e in entries:
            for _, n in list(rmpath.walk(e)):
                if isinstance(n.get("items"), list):
                    n["items"] = [i for i in n["items"] if i.get("archetype_node_id") != "at0004"
                                  or "blood_pressure" not in str(e.get("archetype_node_id"))]
        return entries, header

    monkeypatch.setattr(report_mod, "map_back", drops_systolic)
    rec = _one(TEMPLATES / "vital_signs_ehrn.opt")
    systolic = _node(rec, "Systolic", "blood_pressure.v2")
    assert systolic["class"] == "dropped" and not systolic["declared"]
    assert rec.state == "failed"


def test_the_template_lines_list_every_node_with_its_class():
    rep = run([TEMPLATES / "vital_signs_ehrn.opt"])
    lines = rep.lines()
    assert lines[0].startswith("vital_signs_ehrn.opt: partial (template EHRN Vital signs.v2: ")
    head = next(x for x in lines if x.startswith("template EHRN Vital signs.v2:"))
    assert re.search(r"\d+ leaf nodes, \d+ mapped, \d+ residue, \d+ dropped", head)
    assert any(x.startswith("  mapped: ") and "'Systolic'" in x for x in lines)
    assert any(x.startswith("  dropped: ") and "respiration.v1" in x for x in lines)


@pytest.mark.parametrize("opt", sorted(TEMPLATES.glob("*.opt")), ids=lambda p: p.name)
def test_every_corpus_template_node_is_classed(opt):
    rec = _one(opt)
    assert rec.nodes and {n["class"] for n in rec.nodes} <= {"mapped", "residue", "dropped"}
    assert all(n["reason"] for n in rec.nodes if n["class"] == "dropped")
