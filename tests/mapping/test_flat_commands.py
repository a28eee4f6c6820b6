"""`manage.py convert` and `manage.py mapping_report` on corpus FLAT files (no server)."""
from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from tests.fixtures import OPENEHR_CORPUS

FLAT = OPENEHR_CORPUS / "compositions" / "vital_signs_ehrn.flat.json"
OPT = OPENEHR_CORPUS / "templates" / "vital_signs_ehrn.opt"
REFUSED = OPENEHR_CORPUS / "compositions" / "kds_procedure.flat.json"
REFUSED_OPT = OPENEHR_CORPUS / "templates" / "kds_procedure.opt"


def test_convert_flat_to_canonical(tmp_path):
    out = tmp_path / "c.json"
    call_command("convert", str(FLAT), "--opt", str(OPT), "--out", str(out))
    comp = json.loads(out.read_text())
    assert comp["_type"] == "COMPOSITION"
    assert comp["archetype_details"]["template_id"]["value"] == "EHRN Vital signs.v2"


def test_convert_flat_to_fhir(tmp_path):
    out = tmp_path / "b.json"
    call_command("convert", str(FLAT), "--opt", str(OPT), "--to", "fhir", "--out", str(out))
    bundle = json.loads(out.read_text())
    assert bundle["resourceType"] == "Bundle"
    assert any(e["resource"]["resourceType"] == "Observation" for e in bundle["entry"])


def test_convert_flat_without_its_opt_fails_clearly():
    with pytest.raises(CommandError, match="--opt"):
        call_command("convert", str(FLAT), "--opt", str(REFUSED_OPT))


def test_convert_names_the_keys_it_cannot_consume():
    with pytest.raises(CommandError, match=r"körperstelle:0\|code"):
        call_command("convert", str(REFUSED), "--opt", str(REFUSED_OPT))


def test_mapping_report_takes_flat_files(capsys):
    # the refused one has keys its template does not define (EHRbase refuses it too): skipped, not failed
    call_command("mapping_report", str(OPT), str(FLAT), str(REFUSED), "--opt", str(REFUSED_OPT))
    out = capsys.readouterr().out
    assert "vital_signs_ehrn.flat.json: round-tripped (" in out
    assert "kds_procedure.flat.json: skipped (FLAT keys the template does not define: " in out
    assert "körperstelle:0|code" in out


def test_mapping_report_flat_only(capsys):
    call_command("mapping_report", str(OPT), str(FLAT))
    assert "vital_signs_ehrn.flat.json: round-tripped (" in capsys.readouterr().out


def test_mapping_report_skips_a_flat_file_without_its_opt(capsys):
    call_command("mapping_report", str(FLAT))
    assert "vital_signs_ehrn.flat.json: skipped (no OPT" in capsys.readouterr().out
