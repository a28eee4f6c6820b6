"""validate_fhir's fast path for our residue extensions gives the same verdict as the R4B model."""
import copy
import json

from fhir.resources.R4B.extension import Extension
from fhir.resources.R4B.observation import Observation
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sync.mapping import to_fhir, validate_fhir
from sync.mapping.residue import URL
from sync.mapping.validate import residue_ok

from .conftest import REPO_DIR

PARTS = ["path", "attribute", "name", "rm", "basis", "value", "other"]


def _model_ok(cls, data) -> bool:
    try:
        cls.model_validate(data)
        return True
    except (ValidationError, ValueError, TypeError):
        return False


sub = st.fixed_dictionaries({"url": st.sampled_from(PARTS)}, optional={
    "valueString": st.one_of(st.text(max_size=6), st.integers(), st.none()),
    "valueInteger": st.integers(-3, 3)})
ext = st.fixed_dictionaries({"url": st.sampled_from([URL, "http://example.org/x", ""])},
                            optional={"extension": st.lists(sub, max_size=3), "valueString": st.text(max_size=3)})


@settings(max_examples=400, deadline=None)
@given(ext)
def test_the_fast_rule_accepts_only_what_the_model_accepts(e):
    if residue_ok(e):
        assert _model_ok(Extension, e), e


@settings(max_examples=150, deadline=None)
@given(st.lists(ext, min_size=1, max_size=3))
def test_validate_fhir_agrees_with_the_model_on_whole_resources(exts):
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "extension": exts}
    assert (validate_fhir(copy.deepcopy(obs)) == []) == _model_ok(Observation, obs)


def test_produced_residue_takes_the_fast_path():
    comp = json.loads((REPO_DIR / "tests" / "fixtures" / "oncology" / "oncology_encounter.composition.json").read_text())
    res = to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources
    residues = [e for r in res for e in r.get("extension", []) if e["url"] == URL]
    assert residues and all(map(residue_ok, residues))
    assert all(validate_fhir(r) == [] for r in res)
