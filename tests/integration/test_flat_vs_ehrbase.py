"""FLAT -> canonical: ours (sync/mapping/flat.py) against the real EHRbase, which is the authority.

* Every corpus OPT: the web template we build equals the one EHRbase serves (id, name, RM type, node
  id, occurrences, AQL path, context flag, inputs and their coded lists) node for node.
* Every corpus FLAT file: POST it to EHRbase (composition ``_uid`` left out, it is the server's), then
  - accepted: GET the canonical composition and compare it with ours, server-set fields (uid) removed;
  - refused with 400 "Could not consume Parts [...]": we raise FlatError naming exactly those keys;
  - refused with 422 (the composition breaks its template): we convert it, and EHRbase refuses our
    canonical form too (422);
  - no OPT in the corpus (the IPS files): we refuse it for want of a template.
* EHRbase's own FLAT: each corpus canonical composition EHRbase accepts is read back as FLAT, that FLAT
  is posted again (EHRbase's FLAT -> canonical) and compared with ours from the same FLAT.
"""
from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from sync.clients.errors import ClientError
from sync.clients.openehr import OpenEHRClient, template_id_of
from sync.mapping import flat, webtemplate
from tests.fixtures import OPENEHR_CORPUS, REPO_DIR

pytestmark = pytest.mark.integration

TEMPLATES = sorted((OPENEHR_CORPUS / "templates").glob("*.opt"))
FLAT_FILES = sorted((OPENEHR_CORPUS / "compositions").glob("*.flat.json"))
CANONICAL_FILES = sorted((OPENEHR_CORPUS / "compositions").glob("*.composition.json"))
ONCOLOGY_OPT = REPO_DIR / "deploy" / "templates" / "conflictdesk_oncology.v1.opt"
ONCOLOGY_FLAT = REPO_DIR / "tests" / "fixtures" / "oncology" / "oncology_encounter.flat.json"
NOW = "1970-01-01T00:00:00.000Z"  # what we fill in where EHRbase fills in its own 'now'
WT_FIELDS = ("id", "name", "rmType", "nodeId", "min", "max", "aqlPath", "inContext")

# What EHRbase does with each corpus FLAT file (checked below, not assumed): a change here is news.
EXPECTED = {
    "covid_management_health_risk.flat.json": "accepted",
    "encounter_body_temperature_multi.flat.json": "accepted",
    "vital_signs_ehrn.flat.json": "accepted",
    "ips.flat.json": "no OPT",
    "ips_acute_myeloid_leukemia.flat.json": "no OPT",
    "kds_diagnosis.flat.json": "422",
    "kds_encounter_case.flat.json": "400",
    "kds_lab_report.flat.json": "400",
    "kds_medication_administration.flat.json": "400",
    "kds_medication_statement.flat.json": "400",
    "kds_procedure.flat.json": "400",
    "medication_order.flat.json": "422",
    "news2_encounter_vitals.flat.json": "422",
}


@pytest.fixture(scope="module")
def site(ehrbase_urls):
    """Site 2 with every corpus OPT (and ours) uploaded, and a fresh EHR."""
    with OpenEHRClient(ehrbase_urls[-1]) as cdr:
        for opt in TEMPLATES + [ONCOLOGY_OPT]:
            cdr.upload_template(opt.read_text(encoding="utf-8-sig"))
        ehr = cdr.create_ehr(subject_id=str(uuid.uuid4()), subject_namespace="urn:conflictdesk:test:flat").ehr_id
        yield cdr, ehr


def _opt_for(flat_file: Path) -> Path | None:
    stem = flat_file.name[: -len(".flat.json")]
    path = OPENEHR_CORPUS / "templates" / f"{stem}.opt"
    return path if path.exists() else None


def _without_root_uid(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if not re.fullmatch(r"[^/|]+/_uid", k)}


def _server_fields_removed(comp: dict) -> dict:
    out = json.loads(json.dumps(comp))
    out.pop("uid", None)
    return out


def differences(ours, theirs, path: str = "") -> list[str]:
    """Paths where the two canonical forms differ ('now' we filled in matches any EHRbase time)."""
    if ours == NOW and isinstance(theirs, str):
        return []
    if isinstance(ours, dict) and isinstance(theirs, dict):
        out = [f"{path}/{k}: only {'ours' if k in ours else 'EHRbase'}" for k in sorted(set(ours) ^ set(theirs))]
        for k in sorted(set(ours) & set(theirs)):
            out += differences(ours[k], theirs[k], f"{path}/{k}")
        return out
    if isinstance(ours, list) and isinstance(theirs, list):
        out = [f"{path}: {len(ours)} items, EHRbase {len(theirs)}"] if len(ours) != len(theirs) else []
        for i, (a, b) in enumerate(zip(ours, theirs)):
            out += differences(a, b, f"{path}[{i}]")
        return out
    return [] if (ours == theirs and type(ours) is type(theirs)) else [f"{path}: differs"]


def _ehrbase_refusal(exc: ClientError) -> tuple[int, str]:
    detail = exc.detail.get("message") if isinstance(exc.detail, dict) else exc.detail
    return exc.status, str(detail or "")


# ------------------------------------------------------------------ web templates
def _projection(node: dict) -> dict:
    out = {k: node.get(k) for k in WT_FIELDS}
    out["inputs"] = [(i.get("suffix"), i.get("type"), i.get("terminology"),
                      [(v.get("value"), v.get("label"), v.get("ordinal")) for v in i.get("list", [])])
                     for i in node.get("inputs", [])]
    out["children"] = [_projection(c) for c in node.get("children", [])]
    return out


def _first_difference(a: dict, b: dict, path: str = "") -> str | None:
    for k in WT_FIELDS + ("inputs",):
        if a[k] != b[k]:
            return f"{path or '/'}: {k}"
    if [c["id"] for c in a["children"]] != [c["id"] for c in b["children"]]:
        return f"{path or '/'}: children {[c['id'] for c in a['children']]} vs {[c['id'] for c in b['children']]}"
    for x, y in zip(a["children"], b["children"]):
        d = _first_difference(x, y, f"{path}/{x['id']}")
        if d:
            return d
    return None


@pytest.mark.parametrize("opt", TEMPLATES + [ONCOLOGY_OPT], ids=lambda p: p.stem)
def test_our_web_template_is_ehrbases(site, opt):
    cdr, _ = site
    xml = opt.read_text(encoding="utf-8-sig")
    served = cdr.web_template(template_id_of(xml))
    ours = webtemplate.to_json(webtemplate.build(xml))
    assert ours["templateId"] == served["templateId"]
    assert ours["defaultLanguage"] == served["defaultLanguage"]
    assert sorted(ours["languages"]) == sorted(served["languages"])
    assert _first_difference(_projection(ours["tree"]), _projection(served["tree"])) is None


# ------------------------------------------------------------------ corpus FLAT files
def test_every_corpus_flat_file_has_an_expected_outcome():
    assert sorted(f.name for f in FLAT_FILES) == sorted(EXPECTED)


@pytest.mark.parametrize("flat_file", FLAT_FILES + [ONCOLOGY_FLAT], ids=lambda p: p.name)
def test_flat_file_against_ehrbase(site, flat_file):
    cdr, ehr = site
    doc = _without_root_uid(json.loads(flat_file.read_text(encoding="utf-8-sig")))
    opt = ONCOLOGY_OPT if flat_file == ONCOLOGY_FLAT else _opt_for(flat_file)
    expected = EXPECTED.get(flat_file.name, "accepted")
    if opt is None:
        assert expected == "no OPT"
        with pytest.raises(flat.FlatError, match="operational template"):
            flat.to_canonical(doc, template_id="no such template")
        return
    tid = template_id_of(opt.read_text(encoding="utf-8-sig"))
    try:
        ref = cdr.create_composition(ehr, doc, template_id=tid)
    except ClientError as exc:
        status, message = _ehrbase_refusal(exc)
        assert str(status) == expected, f"EHRbase {status}: {message[:300]}"
        if status == 400:
            refused = re.search(r"Could not consume Parts \[(.*)\]", message, re.S)
            assert refused, message[:300]
            with pytest.raises(flat.FlatError) as ours:
                flat.to_canonical(doc, opt, now=NOW)
            assert set(ours.value.keys) == {k.strip() for k in refused.group(1).split(",")}
            return
        assert status == 422, message[:300]
        comp = flat.to_canonical(doc, opt, now=NOW)
        with pytest.raises(ClientError) as again:
            cdr.create_composition(ehr, comp)
        assert again.value.status == 422, "EHRbase accepts our canonical form of a FLAT file it refuses"
        return
    assert expected == "accepted"
    theirs = _server_fields_removed(cdr.get_composition(ehr, ref.uid).content)
    ours = _server_fields_removed(flat.to_canonical(doc, opt, now=NOW))
    assert differences(ours, theirs) == []


# ------------------------------------------------------------------ EHRbase's own FLAT
@pytest.mark.parametrize("canonical_file", CANONICAL_FILES, ids=lambda p: p.name)
def test_ehrbase_flat_of_corpus_compositions_converts_as_ehrbase_does(site, canonical_file):
    cdr, ehr = site
    comp = json.loads(canonical_file.read_text(encoding="utf-8-sig"))
    tid = comp.get("archetype_details", {}).get("template_id", {}).get("value")
    opts = {template_id_of(p.read_text(encoding="utf-8-sig")): p for p in TEMPLATES}
    if tid not in opts:
        assert canonical_file.name.startswith("ips"), canonical_file.name  # the IPS OPT is not in the corpus
        return
    comp.pop("uid", None)
    try:
        first = cdr.create_composition(ehr, comp)
    except ClientError as exc:
        status, message = _ehrbase_refusal(exc)
        assert status == 422, message[:300]  # the canonical file breaks its template: no FLAT to read back
        return
    doc = _without_root_uid(cdr.get_composition(ehr, first.uid, flat=True).content)
    again = cdr.create_composition(ehr, doc, template_id=tid)
    theirs = _server_fields_removed(cdr.get_composition(ehr, again.uid).content)
    ours = _server_fields_removed(flat.to_canonical(doc, opts[tid], now=NOW))
    assert differences(ours, theirs) == []
