"""Seeding against a real EHRbase: commit, read back, map; idempotent re-runs; invalid cases."""
import random
import re
import uuid
from datetime import datetime, timezone

import pytest

from sync.clients.errors import InvalidRequest
from sync.clients.openehr import OpenEHRClient
from sync.demo.flat import ROOT, TEMPLATE_ID
from sync.demo.generator import SUBJECT_NAMESPACE, generate_patients
from sync.demo.invalid import CASES, invalid_case
from sync.demo.seed import commit_invalid, invalid_held, seed_site, trickle
from sync.mapping import MappingError, UnknownArchetype, UnmappedTemplate, to_fhir, validate_fhir
from sync.workflow.payload import check_rm, check_storable
from sync.workflow.result import ValidationFailed

from .test_generator import EXTRA_SHAPES

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BP_LOINC, HB_LOINC = "85354-9", "718-7"


@pytest.fixture(scope="module")
def cdr(ehrbase_urls):
    with OpenEHRClient(ehrbase_urls[0]) as client:
        yield client


@pytest.fixture(scope="module")
def seeded(cdr):
    prefix = f"SYNT{uuid.uuid4().hex[:8]}"  # fresh subjects every run: the servers are shared
    return prefix, seed_site(cdr, 3, seed=2024, prefix=prefix)


def web_template_nodes(node, prefix=""):
    """{node path without indices: max occurrences} for the whole web template."""
    path = f"{prefix}/{node['id']}" if prefix else node["id"]
    out = {path: node.get("max", 1)}
    for child in node.get("children", []):
        out.update(web_template_nodes(child, path))
    return out


def test_it_seeds_and_reads_back_every_composition(cdr, seeded):
    prefix, result = seeded
    assert len(result.patients) == 3 and result.created >= 12 and result.skipped == 0
    for seed_, patient in zip(result.patients, generate_patients(3, 2024, prefix=prefix)):
        assert cdr.find_ehr(patient.subject_id, SUBJECT_NAMESPACE).ehr_id == seed_.ehr_id
        keys = {e.revises or e.key for e in patient.events}
        assert set(seed_.refs) == keys
        diagnosis = cdr.get_composition(seed_.ehr_id, seed_.refs["diagnosis"].uid, flat=True).content
        revised = [e for e in patient.events if e.revises == "diagnosis"]
        assert seed_.refs["diagnosis"].version == 1 + len(revised)
        expected = (revised or patient.events)[-1 if revised else 0].flat
        name = f"{ROOT}/problem_diagnosis:0/problem_diagnosis_name|code"
        assert diagnosis[name] == expected[name]


def test_a_second_run_commits_nothing(cdr, seeded):
    prefix, first = seeded
    again = seed_site(cdr, 3, seed=2024, prefix=prefix)
    assert again.created == 0 and again.skipped == first.created
    assert [p.ehr_id for p in again.patients] == [p.ehr_id for p in first.patients]


def test_every_seeded_composition_maps_to_valid_fhir(cdr, seeded):
    _, result = seeded
    codes, mapped = set(), 0
    for patient in result.patients:
        for ref in patient.refs.values():
            canonical = cdr.get_composition(patient.ehr_id, ref.uid).content
            assert canonical["archetype_details"]["template_id"]["value"] == TEMPLATE_ID
            try:
                out = to_fhir(canonical, site="site-demo", ehr_id=patient.ehr_id, patient_ref="Patient/demo")
            except (UnknownArchetype, UnmappedTemplate):
                continue  # a row a colleague has not added yet: a loss, not an error
            mapped += 1
            for resource in out.resources:
                assert validate_fhir(resource) == [], resource["resourceType"]
                codes.update(c.get("code") for c in (resource.get("code") or {}).get("coding", []))
    assert mapped and {BP_LOINC, HB_LOINC} <= codes


def test_generated_keys_are_web_template_nodes(cdr, seeded):
    nodes = web_template_nodes(cdr.web_template(TEMPLATE_ID)["tree"])
    prefix, _ = seeded
    flats = [e.flat for p in generate_patients(20, 7, prefix=prefix) for e in p.events]
    flats += [invalid_case(kind, random.Random(1), datetime.now(timezone.utc)).flat for kind in CASES]
    shapes = {k.split("|")[0] for f in flats for k in f} | {s.replace(":#", ":0").split("|")[0] for s in EXTRA_SHAPES}
    for key in shapes:
        segments = key.split("/")
        rm = next((i for i, s in enumerate(segments) if s.startswith("_")), len(segments))
        segments = segments[:rm]  # from an RM attribute on (_uid, _mapping, ...) it is not a template node
        path = "/".join(re.sub(r":\d+$", "", s) for s in segments)
        assert path in nodes, key
        for depth, segment in enumerate(segments):
            node = "/".join(re.sub(r":\d+$", "", s) for s in segments[: depth + 1])
            indexed = re.search(r":\d+$", segment) is not None
            assert indexed == (nodes[node] != 1), (key, segment)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_invalid_cases_behave_as_documented(cdr, seeded, kind):
    _, result = seeded
    ehr_id = result.patients[0].ehr_id
    case = invalid_case(kind, random.Random(5), datetime.now(timezone.utc))
    if not case.site_accepts:
        with pytest.raises(InvalidRequest) as exc:
            cdr.create_composition(ehr_id, case.flat, template_id=TEMPLATE_ID)
        assert exc.value.status == 422
        return
    ref = cdr.create_composition(ehr_id, case.flat, template_id=TEMPLATE_ID)
    canonical = cdr.get_composition(ehr_id, ref.uid).content
    try:
        check_storable(canonical)  # the engine's detect step
        check_rm(canonical)  # the engine's validate-source step
    except ValidationFailed:
        return  # dead letter (cause validation)
    try:
        out = to_fhir(canonical, site="site-demo", ehr_id=ehr_id, patient_ref="Patient/demo")
    except MappingError:
        return  # dead letter (cause mapping)
    issues = [i for r in out.resources for i in validate_fhir(r)]
    assert issues, f"{kind} now maps to valid FHIR: the demo would show no dead letter for it"


def test_the_invalid_compositions_an_ehr_holds_are_counted_so_a_re_run_commits_none_again(cdr):
    ehr_id = cdr.create_ehr(subject_id=f"inv-{uuid.uuid4()}", subject_namespace="conflictdesk-test").ehr_id
    assert invalid_held(cdr, ehr_id) == 0
    commit_invalid(cdr, ehr_id, 2, seed=3)
    assert invalid_held(cdr, ehr_id) == 2


def test_trickle_commits_for_its_duration(cdr, seeded):
    _, result = seeded
    report = trickle({"site1": cdr}, rate_per_s=5, duration_s=1.5, seed=3,
                     ehrs={"site1": [p.ehr_id for p in result.patients]})
    assert report.committed >= 2 and report.failed == 0 and report.seconds < 5
