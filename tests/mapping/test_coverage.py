"""The coverage registry: every model file has tests that prove it both ways (issue 18), and what a test
module declares in COVERS is checked against what it can show (sync.mapping.coverage)."""
import shutil
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from sync.mapping.coverage import coverage
from sync.mapping.spec import SPEC_DIR

from .conftest import REPO_DIR

TESTS = REPO_DIR / "tests"
GOAL = SPEC_DIR / "evaluation" / "goal.v1.yml"
PROVES_BOTH = "from sync.mapping import from_fhir, to_fhir\n"


def test_every_model_file_has_tests_that_prove_it_both_ways():
    cov = coverage(TESTS)
    assert cov.problems == []
    assert {r.name for r in cov.rows if not (r.proven("forward") and r.proven("reverse"))} == set()


def _tree(tmp_path, covers: str, body: str = PROVES_BOTH):
    specs, tests = tmp_path / "specs", tmp_path / "tests"
    specs.mkdir(exist_ok=True)
    tests.mkdir(exist_ok=True)
    shutil.copy(GOAL, specs / GOAL.name)
    (tests / "test_goal.py").write_text(body + f"COVERS = {covers}\n")
    return coverage(tests, specs)


def test_a_model_file_without_a_both_way_test_is_a_problem(tmp_path):
    assert _tree(tmp_path, '{"EVALUATION.goal.v1": "forward reverse"}').problems == []
    assert [p.split(":")[0] for p in _tree(tmp_path, '{"EVALUATION.goal.v1": "forward"}').problems] == \
        ["EVALUATION.goal.v1"]
    assert len(_tree(tmp_path, "{}").problems) == 2


@pytest.mark.parametrize("covers,body", [
    ('{"EVALUATION.goal.v1": "forward reverse hapi"}', PROVES_BOTH),  # hapi without a HAPI fixture
    ('{"EVALUATION.goal.v1": "forward reverse"}', "from sync.mapping import to_fhir\n"),  # reverse without a way back
    ('{"EVALUATION.goal.v1": "forward reverse", "EVALUATION.nothing.v1": "forward"}', PROVES_BOTH),  # no such file
    ('{"EVALUATION.goal.v1": "forward reverse sideways"}', PROVES_BOTH),
    ('dict(goal="forward reverse")', PROVES_BOTH),  # not a literal: cannot be read without importing
])
def test_a_declaration_the_module_cannot_show_is_a_problem(tmp_path, covers, body):
    assert _tree(tmp_path, covers, body).problems != []


@pytest.mark.parametrize("import_line", ["from tests.roundtrip import trip\n", "from .roundtrip import trip\n"])
def test_a_shared_round_trip_in_a_helper_module_counts_for_the_module_importing_it(tmp_path, import_line):
    """A round trip written once in a helper of the test tree proves the ways of every module importing it; the
    same declaration without the import proves nothing."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "roundtrip.py").write_text(PROVES_BOTH + "def trip(): ...\n")
    assert _tree(tmp_path, '{"EVALUATION.goal.v1": "forward reverse"}', import_line).problems == []
    assert _tree(tmp_path, '{"EVALUATION.goal.v1": "forward reverse"}', "import json\n").problems != []


def test_totals_per_archetype_and_per_resource_type(tmp_path):
    cov = _tree(tmp_path, '{"EVALUATION.goal.v1": "forward reverse"}')
    assert cov.totals == {
        "archetypes": {"total": 1, "forward": 1, "reverse": 1, "hapi": 0, "both ways and validated": 0},
        "resource types": {"total": 1, "forward": 1, "reverse": 1, "hapi": 0, "both ways and validated": 0}}
    assert [t.resource for t in cov.types] == ["Goal"]


def test_the_command_prints_rows_types_and_totals():
    out = StringIO()
    call_command("mapping_report", "--coverage", stdout=out)
    lines = out.getvalue().splitlines()
    cov = coverage(TESTS)
    assert lines[-2:] == cov.summary()
    goal = next(x for x in lines if x.startswith("EVALUATION.goal.v1 |"))
    assert goal.split(" | ")[1:5] == ["Goal", "forward", "reverse", "hapi"]
    assert any(x.startswith("Goal | 1 | forward | reverse | hapi") for x in lines)


def test_the_command_fails_when_a_row_lacks_tests(tmp_path):
    (tmp_path / "test_nothing.py").write_text("COVERS = {}\n")
    with pytest.raises(CommandError):
        call_command("mapping_report", "--coverage", "--tests", str(tmp_path), stdout=StringIO(), stderr=StringIO())
