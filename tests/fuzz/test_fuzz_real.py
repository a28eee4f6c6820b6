"""Malformed compositions that the real EHRbase (site 1) still accepts, through the engine in-process.

Draws malformed canonical compositions, commits each at EHRbase, keeps the
ones it accepts with the malformation intact (up to ``SAMPLE``; a commit that
EHRbase stores clinically equal to the unmutated seed, having dropped or
coerced the bad node, is a valid record and is left out), and drives a run for each with the real
clients and mapping. Each must dead-letter, nothing of the site may reach
HAPI (counted in HAPI's history by our source identifier prefix, the site name
being unique to this test), and the audit chain must verify afterwards.
A kept case the engine cannot tell from a valid record (an optional node
replaced, a coerced name, a well-formed non-UCUM unit: no UCUM validator)
may sync; it is counted and printed, and at least two thirds must dead-letter.
"""
from __future__ import annotations

import copy
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings as hsettings

from audit.verify import verify_all
from sync.clients.errors import ClientError
from sync.clients.fhir import FHIRClient
from sync.clients.openehr import OpenEHRClient, template_id_of
from sync.identity import SOURCE_SYSTEM, record_key
from sync.models import ChangeEvent, DeadLetter, Direction, Site, SyncRun
from sync.workflow import dispatch
from sync.workflow.runner import advance

from sync.mapping import compare_clinical

from .mutations import COMPOSITIONS, Case, composition_seed, malformed_composition

NORMALISED: list[str] = []

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SAMPLE = 30
# Categories whose mutations the unit fuzz shows the engine refuses and EHRbase may still take.
CATEGORIES = ["null_flavour_with_value", "bad_units", "huge_string", "bad_date", "wrong_type", "missing_mandatory"]
SEEDS_WITH_TEMPLATES = ["encounter_body_temperature_multi", "lab_blood_gas", "kds_diagnosis.patient1",
                        "kds_procedure.patient3-3"]
TEMPLATES = COMPOSITIONS.parent / "templates"
TEMPLATE_FILE = {"kds_diagnosis.patient1": "kds_diagnosis", "kds_procedure.patient3-3": "kds_procedure"}


def _accepted(cdr, ehr_id, draws) -> list[tuple[Case, str]]:
    """Commit the drawn cases; (case, version uid) for each EHRbase took."""
    out = []
    for case in draws:
        doc = case.document()
        if not isinstance(doc, dict):
            continue
        doc.pop("uid", None)
        try:
            ref = cdr.create_composition(ehr_id, doc)
        except ClientError:
            continue  # refused at the site: never reaches the engine
        stored = cdr.get_composition(ehr_id, ref.version_uid).content
        if not compare_clinical(composition_seed(case.seed, "x"), stored):
            NORMALISED.append(case.category)  # EHRbase dropped or coerced the malformation: a valid record
            continue
        out.append((case, ref.version_uid))
        if len(out) >= SAMPLE:
            break
    return out


def _draws(n_per_category: int) -> list[Case]:
    cases: list[Case] = []
    for category in CATEGORIES:
        @hsettings(max_examples=n_per_category, derandomize=True, database=None, deadline=None)
        @given(case=malformed_composition(category))
        def collect(case):
            if case.seed in SEEDS_WITH_TEMPLATES:
                cases.append(case)

        collect()
    return cases


def test_malformed_compositions_ehrbase_accepts_dead_letter_and_write_nothing(db, ehrbase_urls, fhir_base_url,
                                                                                   settings, monkeypatch):
    settings.CONFLICTDESK_FHIR_BASE_URL = fhir_base_url
    settings.CONFLICTDESK_STAFF_EMAILS = []
    monkeypatch.setattr(dispatch, "send", lambda run_id, countdown: None)
    started = datetime.now(timezone.utc) - timedelta(seconds=2)
    name = f"fuzz-{uuid.uuid4().hex[:8]}"
    site = Site.objects.create(name=name, openehr_base_url=ehrbase_urls[0], local_demo=True)
    with OpenEHRClient(ehrbase_urls[0]) as cdr, FHIRClient(fhir_base_url) as fhir:
        for seed in SEEDS_WITH_TEMPLATES:
            opt = (TEMPLATES / f"{TEMPLATE_FILE.get(seed, seed)}.opt").read_bytes()
            cdr.upload_template(opt)
        ehr_id = cdr.create_ehr(subject_id=f"pat-{uuid.uuid4()}", subject_namespace="conflictdesk-fuzz").ehr_id
        accepted = _accepted(cdr, ehr_id, _draws(60))
        print(f"\nEHRbase normalised {len(NORMALISED)} into valid records; kept {len(accepted)} malformed: "
              f"{sorted({c.category for c, _ in accepted})}")
        assert accepted, "EHRbase refused every malformed composition: nothing to push through the engine"

        outcomes, synced, dead = {}, [], []
        for case, version_uid in accepted:
            vo = version_uid.split("::")[0]
            event = ChangeEvent.objects.create(direction=Direction.TO_FHIR, source=f"site:{name}", site=site,
                                               source_object_id=vo, source_version=version_uid, version_number=1,
                                               ehr_id=ehr_id)
            run = SyncRun.objects.create(change_event=event, direction=Direction.TO_FHIR, site=site,
                                         record_key=record_key(name, vo))
            status = advance(run.pk, "fuzz-real")
            letter = DeadLetter.objects.filter(run=run).first()
            outcomes[f"{case.category} {case.seed} {case.note[:60]}"] = f"{status} {letter.rule if letter else ''}"
            assert status in (SyncRun.Status.DEAD_LETTER, SyncRun.Status.DONE), (case.category, status)
            if letter is None:
                # Valid as EHRbase stored it, as far as the engine can tell (an optional node replaced,
                # a coerced name, a well-formed but non-UCUM unit: the engine has no UCUM validator).
                synced.append(f"{case.category} {case.seed} {case.note[:60]}")
                continue
            dead.append(vo)
            assert letter.rule and letter.path and run.record_key in letter.error
            assert not any(s in letter.error + letter.path for s in case.secrets)

        written = [
            h for h in fhir.history(started)
            if h.resource and any(
                i.get("system") == SOURCE_SYSTEM and str(i.get("value", "")).split("|")[:2] in
                [[name, vo] for vo in dead]
                for i in (h.resource.get("identifier") if isinstance(h.resource.get("identifier"), list)
                          else [h.resource.get("identifier") or {}])
            )
        ]
    broken = [r for r in verify_all() if r.broken]
    print(json.dumps(outcomes, indent=1)[:4000])
    assert not broken, broken
    assert len(dead) >= len(accepted) * 2 // 3, f"only {len(dead)} of {len(accepted)} dead-lettered: {synced}"
    assert written == [], f"{len(written)} resource version(s) of dead-lettered records reached HAPI"
    print(f"{len(dead)} dead-lettered, {len(synced)} synced as valid: {synced}")
