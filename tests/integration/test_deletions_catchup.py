"""Catch-up after an outage with deletions and corrections in the backlog, on real EHRbase and HAPI (issue 20).

The engine is down (nothing polled) while both sides change: at the site,
compositions are deleted, corrected (a new version without an entry), edited
and created; centrally, a resource is marked entered-in-error and another
edited. The catch-up reads in pages (page size 2), runs everything, and ends
with every deletion and correction applied on the other side and reconcile
clean. Scaled down to run in well under a minute; bench/ holds the large one.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from sync.detection import check_deletions, poll_central, poll_site
from sync.models import RecordLink, SyncRun
from sync.workflow.deletion import is_retired
from sync.workflow.reconcile import reconcile_site
from sync.workflow.runner import advance

from tests.integration.test_deletions import OPEN, TEMPERATURE_LOINC, code_of, tid, vitals

pytestmark = [pytest.mark.integration]

# Fixtures shared with the deletion tests (pytest finds them by name in this module).
from tests.integration.test_deletions import cdr, site  # noqa: E402,F401


def catch_up(site, ehr, refs) -> list[str]:
    """Detect everything on both sides, then run every open run of this test until none is left."""
    poll_site(site)
    check_deletions(site)
    poll_central()
    statuses = []
    while True:
        runs = (SyncRun.objects.filter(status__in=OPEN, change_event__ehr_id=ehr)
                | SyncRun.objects.filter(status__in=OPEN, change_event__source="central",
                                         change_event__source_object_id__in=refs))
        runs = list(runs.order_by("pk"))
        if not runs:
            return statuses
        statuses += [advance(run.pk, "test") for run in runs]
        poll_site(site)  # our own writes come back as echoes, never as new runs
        check_deletions(site)


def test_a_backlog_with_deletions_and_corrections_on_both_sides_catches_up_clean(cdr, fhir, site, ehr, settings):
    settings.CONFLICTDESK_DETECTION_PAGE_SIZE = 2
    started = datetime.now(timezone.utc)
    template = tid()
    refs = [cdr.create_composition(ehr, vitals(110 + i, 36.5 + i / 10), template_id=template) for i in range(8)]
    poll_site(site)
    assert set(catch_up(site, ehr, [])) == {"done"}
    links = {r.uid: RecordLink.objects.get(versioned_object_uid=r.uid) for r in refs}
    central_refs = [f"{x['type']}/{x['id']}" for link in links.values() for x in link.fhir_resources]

    # The engine is down: the site deletes two, corrects two (temperature dropped), edits one, adds one.
    deleted, corrected, edited, retired_centrally, edited_centrally = refs[0:2], refs[2:4], refs[4], refs[5], refs[6]
    for ref in deleted:
        cdr.delete_composition(ehr, ref.version_uid)
    for ref in corrected:
        cdr.update_composition(ehr, ref.version_uid, vitals(150), template_id=template)
    cdr.update_composition(ehr, edited.version_uid, vitals(99, 37.0), template_id=template)
    new = cdr.create_composition(ehr, vitals(123, 36.9), template_id=template)
    # ... and centrally one record's temperature is marked entered-in-error, another's edited.
    temperature = _temperature(fhir, links[retired_centrally.uid])
    resource = fhir.read(temperature["type"], temperature["id"])
    fhir.update({**resource, "status": "entered-in-error"}, if_match_version=resource["meta"]["versionId"])
    other = _temperature(fhir, links[edited_centrally.uid])
    resource = fhir.read(other["type"], other["id"])
    fhir.update({**resource, "valueQuantity": {**resource["valueQuantity"], "value": 38.8}},
                if_match_version=resource["meta"]["versionId"])

    statuses = catch_up(site, ehr, central_refs)
    assert statuses and set(statuses) == {"done"}, statuses

    for ref in deleted:  # every deletion applied: the centre holds the record entered-in-error
        link = RecordLink.objects.get(versioned_object_uid=ref.uid)
        assert link.deleted and all(is_retired(fhir.read(r["type"], r["id"])) for r in link.fhir_resources)
    for ref in corrected:  # the dropped entry's resource is entered-in-error, the rest live
        for r in links[ref.uid].fhir_resources:
            assert is_retired(fhir.read(r["type"], r["id"])) == (r == _temperature(fhir, links[ref.uid]))
    site_now = cdr.get_composition(ehr, retired_centrally.uid)  # the correction reached the site
    assert site_now.ref.version == 2 and "body_temperature" not in str(
        cdr.get_composition(ehr, site_now.ref.version_uid, flat=True).content)
    assert RecordLink.objects.get(versioned_object_uid=new.uid).fhir_resources
    report = reconcile_site(site, started - timedelta(seconds=1), datetime.now(timezone.utc), ehr_id=ehr)
    assert report.unaccounted == [] and not report.by_state.get("pending") and not report.by_state.get("dead_letter")


def _temperature(fhir, link):
    return next(r for r in link.fhir_resources if r["type"] == "Observation"
                and code_of(fhir.vread(r["type"], r["id"], r["version"])) == TEMPERATURE_LOINC)


def test_the_catch_up_bench_runs_end_to_end_in_its_smoke_size(ehrbase_urls, fhir_base_url, tmp_path):
    """bench/deletion_catchup.py at 20 changes (the issue's run is --changes 10000): its own scratch database,
    every deletion and correction applied, reconcile clean, the figures in --out (never bench/results here)."""
    import json
    import os
    import subprocess
    import sys

    from tests.fixtures import REPO_DIR

    out = tmp_path / "deletion_catchup.json"
    published = REPO_DIR / "bench" / "results" / "deletion_catchup.json"
    before = published.read_bytes() if published.exists() else None
    done = subprocess.run(
        [sys.executable, str(REPO_DIR / "bench" / "deletion_catchup.py"), "--changes", "20", "--patients", "2",
         "--page-size", "4", "--site-url", ehrbase_urls[-1], "--fhir-url", fhir_base_url, "--out", str(out)],
        cwd=REPO_DIR, env={**os.environ}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["changes"] == {"site_deleted": 2, "site_corrected": 2, "central_retired": 2, "central_edited": 8,
                                 "site_new": 6}
    assert result["deletions_and_corrections_not_applied"] == 0 and result["reconcile"]["unaccounted"] == []
    assert set(result["catchup_runs"]) == {"done"} and result["runs_after_catchup"] == {}
    assert result["deletions_found"] == 2 and result["phases"]["catchup_total_s"] > 0
    assert (published.read_bytes() if published.exists() else None) == before  # the published figures untouched
