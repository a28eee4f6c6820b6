"""The fidelity guard against the real servers (engine run in-process): an injected lossy mapping sends a
real EHRbase composition to a "fidelity" dead letter with its diff, and HAPI gets nothing for it.

The HAPI check assumes no other engine (a running cluster of another session) polls the same EHRbase:
one would sync the composition with the honest mapping."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from audit.models import AuditEvent
from sync import mapping
from sync.clients.errors import NotFound
from sync.clients.openehr import template_id_of
from sync.detection import poll_site
from sync.identity import SOURCE_SYSTEM, provenance_id
from sync.mapping import convert
from sync.models import Cursor, DeadLetter, EngineWrite, Site, SyncRun
from sync.workflow import dispatch
from sync.workflow.runner import advance
from tests.harness.vitals import CORPUS, SYSTOLIC_LOINC, TEMPLATE, vitals

pytestmark = [pytest.mark.integration, pytest.mark.slow]



@pytest.fixture
def site(transactional_db, ehrbase_urls, fhir_base_url, settings, monkeypatch):
    settings.CONFLICTDESK_FHIR_BASE_URL = fhir_base_url
    monkeypatch.setattr(dispatch, "send", lambda run_id, countdown: None)  # runs are driven here, not by a worker
    site = Site.objects.create(name="site1", openehr_base_url=ehrbase_urls[0], poll_interval_seconds=1, local_demo=True)
    Cursor.objects.create(source="site:site1", position=datetime.now(timezone.utc) - timedelta(seconds=1))
    return site


@pytest.fixture
def lossy(monkeypatch):
    """The systolic magnitude dropped after the mapping's own residue check: kept nowhere, declared nowhere."""
    real = convert._close_unit

    def close_then_lose(spec, entry, path, rel, group, *args):
        real(spec, entry, path, rel, group, *args)
        for res in group:
            for comp in res.get("component") or []:
                if any(c.get("code") == SYSTOLIC_LOINC for c in comp["code"].get("coding", [])):
                    comp.get("valueQuantity", {}).pop("value", None)

    monkeypatch.setattr(convert, "_close_unit", close_then_lose)
    return real


def test_an_injected_lossy_mapping_is_a_fidelity_dead_letter_and_nothing_reaches_hapi(site, cdr, fhir, lossy, monkeypatch):
    template = template_id_of((CORPUS / "templates" / f"{TEMPLATE}.opt").read_bytes())
    ehr = cdr.create_ehr(subject_id=f"pat-{uuid.uuid4()}", subject_namespace="conflictdesk-test").ehr_id
    ref = cdr.create_composition(ehr, vitals(137), template_id=template)
    poll_site(site)
    run = SyncRun.objects.get(change_event__source_version=ref.version_uid)
    assert advance(run.pk, "test-guard") == SyncRun.Status.DEAD_LETTER
    letter = DeadLetter.objects.get(run=run)
    assert (letter.cause, letter.step, letter.rule) == ("fidelity", "transform", "fidelity.round_trip")
    diff = letter.detail["error_detail"]
    assert set(diff) == {"source", "mapped", "mapped_back"}
    lost = {p: v for p, v in diff["source"].items() if p.endswith("/magnitude")}
    assert list(lost.values()) == [137] and all(diff["mapped_back"][p] is None for p in lost)
    assert run.record_key in letter.error and "137" not in letter.error  # the error names no value

    # Nothing at HAPI for this source: no resource under any of its source identifiers, no Provenance.
    monkeypatch.setattr(convert, "_close_unit", lossy)  # the honest mapping, only to learn the identifiers
    committed = cdr.get_composition(ehr, ref.version_uid).content
    expected = mapping.to_fhir(committed, site="site1", ehr_id=ehr, patient_ref="Patient/x").resources
    assert expected
    for r in expected:
        value = next(i["value"] for i in r["identifier"] if i["system"] == SOURCE_SYSTEM) \
            if isinstance(r["identifier"], list) else r["identifier"]["value"]
        assert list(fhir.search(r["resourceType"], {"identifier": f"{SOURCE_SYSTEM}|{value}"})) == []
    try:
        found = fhir.read("Provenance", provenance_id(ref.version_uid))
    except NotFound:
        found = None
    assert found is None, json.dumps(found)[:1500]
    assert not EngineWrite.objects.filter(run=run).exists()
    [event] = AuditEvent.objects.filter(action="guard.checked", run_id=run.pk)
    assert event.outcome == "blocked" and event.detail["undeclared"] >= 1
