"""`python manage.py mapping_report PATH... [--opt OPT] [--json PATH]`: lines, summary, JSON records, exit status."""
import json
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from .conftest import REPO_DIR

FIXTURE = REPO_DIR / "tests" / "fixtures" / "oncology" / "oncology_encounter.composition.json"
RECORD_KEYS = {"file", "format", "state", "why", "template_id", "resources", "losses", "unmapped", "validation",
               "differences", "nodes", "detail"}


def _run(*paths):
    out = StringIO()
    call_command("mapping_report", *map(str, paths), stdout=out)
    return out.getvalue().splitlines()


def _broken(folder):
    bad = json.loads(FIXTURE.read_text())
    vitals = next(e for e in bad["content"] if e["archetype_node_id"].endswith("blood_pressure.v2"))
    del vitals["data"]["events"]  # a mapped entry without any event cannot be converted
    folder.mkdir(exist_ok=True)
    (folder / "broken.composition.json").write_text(json.dumps(bad))


def test_it_reports_templates_compositions_and_fhir(corpus):
    lines = _run(corpus / "openehr" / "templates" / "encounter_body_temperature_multi.opt",
                 corpus / "openehr" / "compositions" / "encounter_body_temperature_multi.composition.json",
                 corpus / "fhir" / "observation_vitals_heart_rate.json",
                 corpus / "fhir" / "encounter_tumor_f202.json")
    assert lines[0].startswith("encounter_body_temperature_multi.opt: ")
    assert "template ehrbase_multi_occurrence.de.v1: " in lines[0]
    comp = next(x for x in lines if x.startswith("encounter_body_temperature_multi.composition.json"))
    assert comp.startswith("encounter_body_temperature_multi.composition.json: round-tripped (")
    enc = next(x for x in lines if x.startswith("encounter_tumor_f202.json"))
    assert enc.startswith("encounter_tumor_f202.json: round-tripped (")  # the rest kept in the feeder audit
    head = next(x for x in lines if x.startswith("template ehrbase_multi_occurrence.de.v1:"))
    assert "leaf nodes" in head and "mapped" in head and "residue" in head and "dropped" in head
    assert any(x.startswith("  mapped: /content[openEHR-EHR-OBSERVATION.body_temperature.v2]") for x in lines)
    assert lines[-1].startswith("4 files, 4 converted, ") and lines[-1].endswith(", 0 skipped, 0 failed")


def test_it_walks_folders_and_counts_every_file(tmp_path, corpus):
    (tmp_path / "a").mkdir()
    body = corpus / "openehr" / "compositions" / "encounter_body_temperature_multi.composition.json"
    (tmp_path / "a" / "c.json").write_text(body.read_text(encoding="utf-8-sig"))
    (tmp_path / "note.txt").write_text("not a mapping input")
    lines = _run(tmp_path)
    assert lines[0].startswith("c.json: round-tripped")
    assert lines[1] == "note.txt: skipped (unknown format (.txt))"
    assert lines[-1] == "2 files, 1 converted, 1 round-tripped, 0 partial, 0 nothing mapped, 1 skipped, 0 failed"


def test_a_failed_file_fails_the_command(tmp_path):
    _broken(tmp_path)
    out = StringIO()
    with pytest.raises(CommandError, match="1 file\\(s\\) failed") as err:
        call_command("mapping_report", str(tmp_path), stdout=out)
    assert err.value.returncode == 1
    text = out.getvalue()
    assert "broken.composition.json: FAILED (MappingError" in text
    assert text.splitlines()[-1] == ("1 files, 0 converted, 0 round-tripped, 0 partial, 0 nothing mapped, "
                                     "0 skipped, 1 failed")


def test_the_exit_status_is_1_when_a_file_failed_and_0_otherwise(tmp_path):
    _broken(tmp_path / "bad")
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "n.txt").write_text("x")
    env = {**os.environ, "DJANGO_DEBUG": os.environ.get("DJANGO_DEBUG", "1")}
    cmd = [sys.executable, "manage.py", "mapping_report"]
    bad = subprocess.run(cmd + [str(tmp_path / "bad")], cwd=REPO_DIR, env=env, capture_output=True, text=True)
    ok = subprocess.run(cmd + [str(tmp_path / "ok")], cwd=REPO_DIR, env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stdout.splitlines()[-1].endswith(", 1 failed"), bad.stderr[-500:]
    assert ok.returncode == 0 and ok.stdout.splitlines()[-1].endswith(", 0 failed"), ok.stderr[-500:]


def test_json_writes_one_record_per_file(tmp_path, corpus):
    _broken(tmp_path)
    (tmp_path / "hr.json").write_text((corpus / "fhir" / "observation_vitals_heart_rate.json").read_text())
    out_json = tmp_path.parent / f"{tmp_path.name}.report.json"
    with pytest.raises(CommandError):
        call_command("mapping_report", str(tmp_path), str(corpus / "openehr" / "templates" / "vital_signs_ehrn.opt"),
                     "--json", str(out_json), stdout=StringIO())
    doc = json.loads(out_json.read_text())
    assert doc["summary"].startswith("3 files, ") and doc["counts"]["files"] == len(doc["files"]) == 3
    for rec in doc["files"]:
        assert set(rec) == RECORD_KEYS
        assert set(rec["unmapped"]) == {"archetypes", "resource_types"}
        assert all(set(x) == {"path", "reason", "travels"} and x["travels"] in ("residue", "dropped")
                   for x in rec["losses"])
    by_name = {r["file"].rsplit("/", 1)[-1]: r for r in doc["files"]}
    assert by_name["broken.composition.json"]["state"] == "failed"
    hr = by_name["hr.json"]
    assert hr["format"] == "fhir" and hr["resources"] == [{"resourceType": "Observation", "id": "heart-rate"}]
    opt = by_name["vital_signs_ehrn.opt"]
    assert opt["nodes"] and all({"path", "name", "archetype", "class", "reason"} <= set(n) for n in opt["nodes"])
    assert "openEHR-EHR-OBSERVATION.pulse.v1" in opt["unmapped"]["archetypes"]
