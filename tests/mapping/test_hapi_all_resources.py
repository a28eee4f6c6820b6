"""Every FHIR resource we produce validates in HAPI with zero errors, declared profiles kept.

Inputs: the oncology fixture (every mapped row, mCODE profiles), every canonical composition of
the shared corpus and of tests/fixtures that maps, and the FHIR-born side: each corpus FHIR
example mapped to openEHR and forward again.  HAPI has mCODE STU4 loaded, so meta.profile is
sent as produced (vital signs, primary cancer condition, TNM, medication request, surgery...)."""
import copy
from concurrent.futures import ThreadPoolExecutor

import pytest

from sync.mapping import MappingError, fhirmodel, from_fhir, to_fhir

from .conftest import REPO_DIR, corpus_files, load
from .hapi import beyond_environment, hapi_errors

ONCOLOGY = REPO_DIR / "tests/fixtures/oncology/oncology_encounter.composition.json"
ARGS = dict(site="site1", ehr_id="e1", patient_ref="Patient/p1")
MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"


def _with_uid(comp: dict) -> dict:
    if not (comp.get("uid") or {}).get("value"):  # some corpus exports carry no version uid
        comp["uid"] = {"_type": "OBJECT_VERSION_ID", "value": "bbbbbbbb-0000-4000-8000-000000000002::corpus::1"}
    return comp


def _mapped(path) -> list[dict]:
    try:
        return to_fhir(_with_uid(load(path)), **ARGS).resources
    except MappingError:
        return []  # not a mapped composition: the mapping report lists why


def _fhir_born(path) -> list[dict]:
    doc = load(path)
    resources = [e["resource"] for e in doc["entry"]] if doc["resourceType"] == "Bundle" else [doc]
    try:
        comp = copy.deepcopy(from_fhir(resources, template_id="t").composition)
        comp["uid"] = {"value": "aaaaaaaa-0000-4000-8000-000000000001::x::1"}
        return to_fhir(comp, **ARGS).resources
    except MappingError:
        return []


def _errors(base: str, resources: list[dict]) -> dict[str, list[str]]:
    with ThreadPoolExecutor(4) as pool:  # HAPI validates in parallel; 0.2-0.4 s each once warm
        found = list(pool.map(lambda r: beyond_environment(r, hapi_errors(base, r)), resources))
    return {f"{r['resourceType']}/{r['id']} {(r.get('meta') or {}).get('profile', [])}": e
            for r, e in zip(resources, found) if e}


@pytest.mark.integration
def test_hapi_validates_every_resource_of_the_oncology_fixture(fhir_base_url):
    resources = to_fhir(load(ONCOLOGY), **ARGS).resources
    profiles = {p for r in resources for p in (r.get("meta") or {}).get("profile", [])}
    assert {MCODE + p for p in ("mcode-primary-cancer-condition", "mcode-tnm-stage-group",
                                "mcode-tnm-primary-tumor-category", "mcode-tnm-regional-nodes-category",
                                "mcode-tnm-distant-metastases-category", "mcode-cancer-related-medication-request",
                                "mcode-cancer-related-surgical-procedure")} <= profiles
    assert _errors(fhir_base_url, resources) == {}


# A '{Breaths}/min' / '{beats}/min' (UCUM, with an annotation) under the resprate/heartrate profile, which fixes
# '/min', was the one known failure here: the specific profile is no longer claimed for it (profile_units.py).
def _params(paths):
    return [pytest.param(p, id=p.name) for p in paths]


@pytest.mark.integration
@pytest.mark.parametrize("path", _params(corpus_files("openehr/compositions/*.composition.json")
                                         + sorted(REPO_DIR.glob("tests/fixtures/*/*.composition.json"))))
def test_hapi_validates_every_resource_of_a_corpus_composition(fhir_base_url, path):
    resources = _mapped(path)
    assert _errors(fhir_base_url, resources) == {}


@pytest.mark.integration
@pytest.mark.parametrize("path", _params(corpus_files("fhir/*.json")))
def test_hapi_validates_every_resource_made_from_corpus_fhir(fhir_base_url, path):
    """What a FHIR sender said comes back as sent (issue 21: kept in the feeder audit), its own faults too
    (an mCODE placeholder code, a relative canonical): an error HAPI finds in the source resource itself may
    come back with it; nothing the mapping adds may."""
    doc = load(path)
    sources = [e["resource"] for e in doc["entry"]] if doc["resourceType"] == "Bundle" else [doc]
    # as kept: a code HAPI cannot parse (a Procedure status 'final') is not given back but reported lost
    kept = [{k: v for k, v in r.items() if not isinstance(v, str) or v in (fhirmodel.allowed_codes(r["resourceType"], k)
                                                                          or {v})} for r in sources]
    sent = {e for r in kept for e in hapi_errors(fhir_base_url, r)}
    errors = {k: [e for e in v if e not in sent] for k, v in _errors(fhir_base_url, _fhir_born(path)).items()}
    assert {k: v for k, v in errors.items() if v} == {}


def test_the_fhir_corpus_is_mostly_readable():
    assert len([r for p in corpus_files("fhir/*.json") for r in _fhir_born(p)]) >= 40
