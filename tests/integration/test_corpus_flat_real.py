"""Every corpus FLAT composition becomes test input: commit it to a real EHRbase with its template,
read the canonical form back, and run it through to_fhir / validation / round trip.

Templates are matched to FLAT files by file name (``x.flat.json`` <-> ``x.opt``) or by the web
template id the FLAT keys start with.  Foreign uids are stripped before the commit.  What EHRbase
refuses is listed with its answer (status and message), not hidden: the corpus FLAT files were
written against other EHRbase / SDK versions and some no longer match their templates.
"""
from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass, field

import httpx
import pytest

from sync.clients.errors import ClientError
from sync.clients.openehr import OpenEHRClient, template_id_of
from sync.mapping import compare_clinical, rmpath, to_fhir, to_openehr, validate_fhir
from sync.mapping.composition import spec_for
from sync.mapping.spec import registry
from tests.fixtures import OPENEHR_CORPUS

pytestmark = pytest.mark.integration

OPENEHR = OPENEHR_CORPUS
SITE2 = os.environ.get("CONFLICTDESK_FLAT_SITE_URL", "http://127.0.0.1:8102/ehrbase/rest/openehr/v1")


@dataclass
class FlatCase:
    name: str
    template_id: str | None = None
    canonical: dict | None = None
    rejected: str | None = None  # why it is not test input (no template, EHRbase's answer)
    extra: dict = field(default_factory=dict)


def web_template_id(template_id: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", template_id.lower()).strip("_")


def _strip_uids(flat: dict) -> dict:
    return {k: v for k, v in flat.items() if not re.search(r"(/_uid|composition_uid)(\||$)", k)}


def commit_flat_corpus(base_url: str = SITE2) -> list[FlatCase]:
    """Commit every corpus FLAT composition (one fresh EHR) and return canonical forms or reasons."""
    opts = {template_id_of(p.read_text(encoding="utf-8-sig")): p for p in (OPENEHR / "templates").glob("*.opt")}
    cases = []
    with OpenEHRClient(base_url) as cdr:
        ehr = cdr.create_ehr(subject_id=str(uuid.uuid4()), subject_namespace="urn:conflictdesk:test:flat").ehr_id
        for f in sorted((OPENEHR / "compositions").glob("*.flat.json")):
            case = FlatCase(f.name)
            cases.append(case)
            flat = json.loads(f.read_text(encoding="utf-8-sig"))
            root = next(iter(flat)).split("/")[0]
            stem = f.name[: -len(".flat.json")]
            case.template_id = next((t for t, p in opts.items() if p.stem == stem), None) or \
                next((t for t in opts if web_template_id(t) == root), None)
            if case.template_id is None:
                case.rejected = f"no OPT in the corpus for web template '{root}'"
                continue
            try:
                cdr.upload_template(opts[case.template_id].read_text(encoding="utf-8-sig"))
                ref = cdr.create_composition(ehr, _strip_uids(flat), template_id=case.template_id)
                case.canonical = cdr.get_composition(ehr, ref.uid).content
            except ClientError as exc:
                detail = exc.detail.get("message") if isinstance(exc.detail, dict) else exc.detail
                case.rejected = f"EHRbase {exc.status}: {str(detail)[:400]}"
    return cases


def uses_mapped_archetype(comp: dict) -> bool:
    return spec_for(comp) is not None or any(e.get("archetype_node_id") in registry()
                                             for _, e in rmpath.entries(comp))


def hapi_errors(base: str, resource: dict) -> list[str]:
    r = httpx.post(f"{base}/{resource['resourceType']}/$validate", json=resource,
                   headers={"Content-Type": "application/fhir+json"}, timeout=60)
    return [f"{(i.get('expression') or ['?'])[0]}: {i.get('diagnostics', '')[:200]}"
            for i in r.json().get("issue", []) if i.get("severity") in ("error", "fatal")]


@pytest.fixture(scope="module")
def flat_cases(ehrbase_urls) -> list[FlatCase]:
    return commit_flat_corpus(SITE2)


def test_every_committed_flat_composition_with_a_mapped_archetype_converts(flat_cases, fhir_base_url):
    committed = [c for c in flat_cases if c.canonical is not None]
    assert committed, "EHRbase accepted none of the corpus FLAT files"
    problems = []
    checked = 0
    for case in committed:
        comp = case.canonical
        if not uses_mapped_archetype(comp):
            continue
        checked += 1
        res = to_fhir(comp, site="site-b", ehr_id="e", patient_ref="Patient/flat")
        if not res.resources:
            problems.append(f"{case.name}: nothing converted")
        for r in res.resources:
            bad = validate_fhir(r) or hapi_errors(fhir_base_url, r)
            if bad:
                problems.append(f"{case.name}: {r['resourceType']} invalid: {bad[:3]}")
        back = to_openehr(res.resources, template_id=case.template_id, base_composition=comp)
        diff = compare_clinical(comp, back)
        if diff:
            problems.append(f"{case.name}: round trip differs at {[d['path'] for d in diff[:3]]}")
    assert checked
    assert problems == []


def test_the_rest_are_listed_with_a_reason(flat_cases):
    """Not a pass/fail on the corpus: every FLAT file is either test input or has a recorded reason."""
    print("\nFLAT corpus on EHRbase (site 2):")
    for case in flat_cases:
        state = "committed" if case.canonical is not None else f"NOT committed: {case.rejected}"
        mapped = " (mapped archetypes)" if case.canonical is not None and uses_mapped_archetype(case.canonical) else ""
        print(f"  {case.name} [{case.template_id or '-'}]: {state}{mapped}")
    for case in flat_cases:
        assert (case.canonical is None) != (case.rejected is None), case.name
