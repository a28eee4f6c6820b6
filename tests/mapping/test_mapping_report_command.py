"""`python manage.py mapping_report PATH...`: lines per file and template, summary, exit status."""
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from .conftest import REPO_DIR

FIXTURE = REPO_DIR / "tests" / "fixtures" / "oncology" / "oncology_encounter.composition.json"


def _run(*paths):
    out = StringIO()
    call_command("mapping_report", *map(str, paths), stdout=out)
    return out.getvalue().splitlines()


def test_it_reports_templates_compositions_and_fhir(corpus):
    lines = _run(corpus / "openehr" / "templates" / "encounter_body_temperature_multi.opt",
                 corpus / "openehr" / "compositions" / "encounter_body_temperature_multi.composition.json",
                 corpus / "fhir" / "observation_vitals_heart_rate.json",
                 corpus / "fhir" / "encounter_tumor_f202.json")
    assert lines[0].startswith("encounter_body_temperature_multi.opt: template ehrbase_multi_occurrence.de.v1")
    comp = next(x for x in lines if x.startswith("encounter_body_temperature_multi.composition.json"))
    assert "validated" in comp and "round-trip equal" in comp
    enc = next(x for x in lines if x.startswith("encounter_tumor_f202.json"))
    assert "lost elements:" in enc and "priority" in enc  # what was lost, by element
    head = next(x for x in lines if x.startswith("template ehrbase_multi_occurrence.de.v1:"))
    assert "leaf data paths" in head and "1 mapped" in head
    assert any(x.startswith("  mapped: /content[openEHR-EHR-OBSERVATION.body_temperature.v2]") for x in lines)
    assert any(x.startswith("  lost: ") and "protocol[at0020]/items[at0021]" in x for x in lines)
    assert lines[-1] == "4 files, 3 converted, 3 round-tripped, 0 failed"


def test_it_walks_folders(tmp_path, corpus):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "c.json").write_text(FIXTURE.read_text())
    (tmp_path / "note.txt").write_text("ignored")
    lines = _run(tmp_path)
    assert lines[0].startswith("c.json: converted") and lines[-1] == "1 files, 1 converted, 1 round-tripped, 0 failed"


def test_it_exits_non_zero_when_a_mapped_input_fails(tmp_path):
    bad = json.loads(FIXTURE.read_text())
    vitals = next(e for e in bad["content"] if e["archetype_node_id"].endswith("blood_pressure.v2"))
    del vitals["data"]["events"]  # a mapped entry without any event cannot be converted
    (tmp_path / "broken.composition.json").write_text(json.dumps(bad))
    out = StringIO()
    with pytest.raises(CommandError, match="1 mapped-archetype"):
        call_command("mapping_report", str(tmp_path), stdout=out)
    text = out.getvalue()
    assert "broken.composition.json: FAILED MappingError" in text
    assert text.splitlines()[-1] == "1 files, 0 converted, 0 round-tripped, 1 failed"
