"""The transform does not depend on JSON key order.

A composition fresh from EHRbase and the same composition reloaded from PostgreSQL JSONB (which
reorders object keys) are the same data: they must give the same FHIR resources, the same losses
and the same clinical-content hash, or the engine sees a false conflict.  Likewise for FHIR input
(HAPI, a bundle re-serialised by a client).  Hypothesis shuffles the keys of every object at every
level of corpus compositions, the oncology fixture and corpus FHIR examples."""
import copy
import hashlib
import json
import random
from datetime import datetime, timezone
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.mapping import MappingError, clinical_content, from_fhir, to_fhir

from .conftest import REPO_DIR, corpus_files, load

ONCOLOGY = REPO_DIR / "tests/fixtures/oncology/oncology_encounter.composition.json"
ARGS = dict(site="site1", ehr_id="e1", patient_ref="Patient/p1")
SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_FROZEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def shuffled(obj, rnd: random.Random):
    """The same JSON with the keys of every object in a random order (lists keep their order)."""
    if isinstance(obj, dict):
        keys = list(obj)
        rnd.shuffle(keys)
        return {k: shuffled(obj[k], rnd) for k in keys}
    if isinstance(obj, list):
        return [shuffled(x, rnd) for x in obj]
    return obj


def load_composition(path) -> dict:
    """A corpus composition as EHRbase would hand it over: with a version uid (some corpus files
    were exported without one)."""
    comp = load(path)
    if not (comp.get("uid") or {}).get("value"):
        comp["uid"] = {"_type": "OBJECT_VERSION_ID", "value": "bbbbbbbb-0000-4000-8000-000000000002::corpus::1"}
    return comp


def _maps(path) -> bool:
    try:
        to_fhir(load_composition(path), **ARGS)
        return True
    except MappingError:
        return False


COMPOSITIONS = [p for p in corpus_files("openehr/compositions/*.composition.json")
                + sorted(REPO_DIR.glob("tests/fixtures/*/*.composition.json")) if _maps(p)]


def _fhir_resources(doc: dict) -> list[dict]:
    return [e["resource"] for e in doc["entry"]] if doc["resourceType"] == "Bundle" else [doc]


def _reads(path) -> bool:
    try:
        from_fhir(_fhir_resources(load(path)), template_id="t")
        return True
    except MappingError:
        return False


FHIR_FILES = [p for p in corpus_files("fhir/*.json") if _reads(p)]


def record_hash(resources: list[dict]) -> str:
    """What the sync ledger stores: a hash of every resource's clinical content."""
    content = [clinical_content(r) for r in resources]
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _forward(comp: dict):
    out = to_fhir(comp, **ARGS)
    return (json.dumps(out.resources, sort_keys=True), [str(x) for x in out.losses], record_hash(out.resources))


class _FrozenNow(datetime):
    @classmethod
    def now(cls, tz=None):
        return _FROZEN


def _backward(resources: list[dict]):
    with mock.patch("sync.mapping.from_fhir.datetime", _FrozenNow):  # a new composition's start time is 'now'
        out = from_fhir(resources, template_id="t")
    comp = copy.deepcopy(out.composition)
    comp["uid"] = {"value": "aaaaaaaa-0000-4000-8000-000000000001::x::1"}
    try:
        again = _forward(comp)
    except MappingError as exc:  # the same typed failure either way is deterministic too
        again = (type(exc).__name__, str(exc))
    return json.dumps(out.composition, sort_keys=True), [str(x) for x in out.losses], again


def test_it_has_inputs():
    assert ONCOLOGY in COMPOSITIONS and len(COMPOSITIONS) >= 12 and len(FHIR_FILES) >= 20


@pytest.mark.parametrize("path", COMPOSITIONS, ids=lambda p: p.name)
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_it_maps_a_composition_the_same_whatever_the_key_order(path, seed):
    comp = load_composition(path)
    assert _forward(shuffled(comp, random.Random(seed))) == _forward(comp)


@pytest.mark.parametrize("path", FHIR_FILES, ids=lambda p: p.name)
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_it_maps_fhir_the_same_whatever_the_key_order(path, seed):
    doc = load(path)
    assert _backward(_fhir_resources(shuffled(doc, random.Random(seed)))) == _backward(_fhir_resources(doc))


def test_the_residue_order_follows_the_data_not_the_keys():
    """Regression: residue items used to follow the source's key order (protocol before data or
    after), so the same composition gave differently ordered openehr-residue extensions."""
    comp = load_composition(next(p for p in COMPOSITIONS if p.name.startswith("encounter_body_temperature_multi")))
    reordered = shuffled(comp, random.Random(0))
    a, b = to_fhir(comp, **ARGS).resources, to_fhir(reordered, **ARGS).resources
    assert [r.get("extension") for r in a] == [r.get("extension") for r in b]
    assert record_hash(a) == record_hash(b)
