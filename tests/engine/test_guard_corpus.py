"""The guard on real data: no false alarm on any corpus composition or FHIR document, and its lean
map-back (from_fhir's reverse path without from_fhir's loss report) equal to from_fhir's composition."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sync import mapping
from sync.mapping import composition as level
from sync.mapping import rmpath
from sync.workflow import guard
from tests.fixtures import CORPUS_DIR

REPO = Path(__file__).resolve().parents[2]
CORPUS = CORPUS_DIR
UID = "0b5e3c4e-1111-4222-8333-944444444444::site-a::1"


def _load(p: Path) -> dict:
    return json.loads(p.read_text(encoding="utf-8-sig"))


def _mapped_compositions():
    paths = sorted((CORPUS / "openehr" / "compositions").glob("*.composition.json"))
    paths.append(REPO / "tests" / "fixtures" / "oncology" / "oncology_encounter.composition.json")
    return [p for p in paths if any(e.get("archetype_node_id") in mapping.spec.registry()
                                    for _, e in rmpath.entries(_load(p)))]


COMPOSITIONS = _mapped_compositions()
FHIR = sorted((CORPUS / "fhir").rglob("*.json"))


def _comp(p: Path) -> dict:
    c = _load(p)
    c.setdefault("uid", {"_type": "OBJECT_VERSION_ID", "value": UID})
    return c


@pytest.mark.parametrize("path", COMPOSITIONS, ids=lambda p: p.name)
def test_forward_passes_and_the_lean_map_back_is_from_fhirs(path):
    c = _comp(path)
    res = mapping.to_fhir(c, site="site-a", ehr_id="e", patient_ref="Patient/p1")
    check = guard.check_forward(mapping, c, res.resources, res.losses)
    assert check.undeclared == []
    entries, head = mapping.map_back(res.resources, template_id=guard._template_id(c), header_for=c)
    full = mapping.from_fhir(res.resources, template_id=guard._template_id(c)).composition
    assert mapping.compare_clinical({"content": entries}, {"content": [e for _, e in rmpath.entries(full)]}) == []
    if level.spec_for(c) and any(r["resourceType"] in guard.LEVEL for r in res.resources):
        assert mapping.compare_clinical(head, {k: full[k] for k in guard.HEADER if k in full}) == []


@pytest.mark.parametrize("path", FHIR, ids=lambda p: p.name)
def test_reverse_passes_on_every_corpus_fhir_document(path):
    doc = _load(path)
    resources = [e["resource"] for e in doc.get("entry", [])] if doc.get("resourceType") == "Bundle" else [doc]
    try:
        out = mapping.from_fhir(resources, template_id="t")
    except mapping.MappingError:
        pytest.skip("no mapping reads this document")
    assert guard.check_reverse(mapping, resources, out).undeclared == []
