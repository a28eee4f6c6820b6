"""Catch-up after an outage with deletions and corrections.

`.venv/bin/python bench/deletion_catchup.py [--changes 10000] [--out bench/results/deletion_catchup.json]`

(tests/integration/test_deletions_catchup.py runs it at 20 changes, ``--out`` a
scratch file, so the published figures are never overwritten by a test.)

Issue 20: after the engine was down while both sides changed (the issue's
case: 24 hours, 10,000 changes), the catch-up ends with every deletion applied
and reconcile clean. The outage is simulated by not polling: what matters to
the engine is the backlog, not the hours it took to build.

1. baseline: ``--records`` compositions (blood pressure + temperature) over
   ``--patients`` EHRs at the site, synced to the centre;
2. outage: ``--changes`` changes, half at the site (10 % of all changes
   deletions, 10 % corrections dropping the temperature entry, the rest new
   compositions) and half centrally (10 % of all changes a temperature marked
   entered-in-error, the rest edits of a temperature), each record touched
   once, none detected;
3. catch-up in this process, one run at a time: the paged site poll, the
   deletion check, the central poll (``CONFLICTDESK_DETECTION_PAGE_SIZE`` a
   page), then every run, until none is open. Timed per phase.
4. checked: every site deletion and correction reads entered-in-error centrally,
   every central retirement reached the site, reconcile clean.

Runs against the development servers (HAPI :8090, EHRbase ``--site-url``,
default site 2); the engine side is a scratch database. Writes
bench/results/deletion_catchup.json with the commit, the machine and the size.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.database import scratch_database  # noqa: E402
from tests.harness.report import dump, host_info, log, tree_state  # noqa: E402

OPEN = ["pending", "running", "retry_wait", "waiting"]


def run_open(site, ehrs: set[str], refs: set[str]) -> dict[str, int]:
    """Advance every open run of this bench (its EHRs' site runs, its resources' central runs), oldest first."""
    from sync.models import SyncRun
    from sync.workflow.runner import advance

    counts: dict[str, int] = {}
    while True:
        site_runs = SyncRun.objects.filter(status__in=OPEN, change_event__ehr_id__in=ehrs)
        central_runs = SyncRun.objects.filter(status__in=OPEN, change_event__source="central",
                                              change_event__source_object_id__in=refs)
        runs = list((site_runs | central_runs).order_by("pk").values_list("pk", flat=True))
        if not runs:
            return counts
        for pk in runs:
            status = advance(pk, "bench")
            counts[status] = counts.get(status, 0) + 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--changes", type=int, default=10000)
    ap.add_argument("--records", type=int, default=0,
                    help="baseline compositions (default: as many as the changes; each record is changed at most "
                         "once, and the deletions, corrections and central changes take 70 %% of the changes)")
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--page-size", type=int, default=500)
    ap.add_argument("--site-url", default="http://127.0.0.1:8102/ehrbase/rest/openehr/v1")
    ap.add_argument("--fhir-url", default="http://127.0.0.1:8090/fhir")
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None,
                    help="where the figures go (default bench/results/deletion_catchup.json)")
    args = ap.parse_args()
    records = args.records or max(args.changes, 10)
    rng = random.Random(args.seed)
    info = {**host_info(), "tree": tree_state(), "changes": args.changes, "records": records,
            "patients": args.patients, "page_size": args.page_size}
    with scratch_database("delcatchup"):
        from django.conf import settings

        from sync.clients.errors import NotFound
        from sync.clients.openehr import OpenEHRClient, template_id_of
        from sync.detection import check_deletions, poll_central, poll_site
        from sync.models import Cursor, RecordLink, Site
        from sync.workflow import dispatch
        from sync.workflow.deletion import is_retired
        from sync.workflow.reconcile import reconcile_site
        from sync.workflow.services import get_services
        from tests.harness.vitals import TEMPERATURE_LOINC, template_opt, vitals_with_temperature

        settings.CONFLICTDESK_FHIR_BASE_URL = args.fhir_url
        settings.CONFLICTDESK_DETECTION_PAGE_SIZE = args.page_size
        dispatch.send = lambda run_id, countdown: None  # runs are driven here, one at a time
        started = datetime.now(timezone.utc)
        site = Site.objects.create(name="site2", openehr_base_url=args.site_url, local_demo=True,
                                   poll_interval_seconds=1)
        Cursor.objects.create(source="site:site2", position=started - timedelta(seconds=1))
        Cursor.objects.create(source="central", position=started - timedelta(seconds=1))
        fhir = get_services().fhir
        phases = {}
        with OpenEHRClient(args.site_url) as cdr:
            cdr.upload_template(template_opt())
            template = template_id_of(template_opt())
            ehrs = [cdr.create_ehr(subject_id=f"catchup-{uuid.uuid4().hex[:12]}",
                                   subject_namespace="conflictdesk-bench").ehr_id for _ in range(args.patients)]
            t0 = time.monotonic()
            refs = [cdr.create_composition(ehrs[i % len(ehrs)], vitals_with_temperature(100 + i % 60, 36.5),
                                           template_id=template) for i in range(records)]
            phases["baseline_commit_s"] = round(time.monotonic() - t0, 1)
            t0 = time.monotonic()
            poll_site(site)
            baseline = run_open(site, set(ehrs), set())
            phases["baseline_sync_s"] = round(time.monotonic() - t0, 1)
            log(f"baseline: {records} compositions synced in {phases['baseline_sync_s']} s ({baseline})")
            links = {r.uid: RecordLink.objects.get(site=site, versioned_object_uid=r.uid) for r in refs}
            central_refs = {f"{x['type']}/{x['id']}" for link in links.values() for x in link.fhir_resources}

            # The outage: nothing is polled while both sides change; each record is touched once.
            share = args.changes // 10
            pool = list(refs)
            rng.shuffle(pool)
            site_n = args.changes // 2
            plan = {"site_deleted": pool[:share], "site_corrected": pool[share:2 * share]}
            central_pool = pool[2 * share:]
            plan["central_retired"] = central_pool[:share]
            plan["central_edited"] = central_pool[share:share + (args.changes - site_n - share)]
            site_edits = max(site_n - 2 * share, 0)
            t0 = time.monotonic()
            deleted_at_site = {r.uid for r in plan["site_deleted"]}
            for ref in plan["site_deleted"]:
                cdr.delete_composition(ref.ehr_id, ref.version_uid)
            for ref in plan["site_corrected"]:
                cdr.update_composition(ref.ehr_id, ref.version_uid, vitals_with_temperature(150, None),
                                       template_id=template)
            new = [cdr.create_composition(ehrs[i % len(ehrs)], vitals_with_temperature(120, 37.0), template_id=template)
                   for i in range(site_edits)]
            retired_refs = []
            for ref in plan["central_retired"]:
                temperature = temperature_of(fhir, links[ref.uid], TEMPERATURE_LOINC)
                resource = fhir.read(temperature["type"], temperature["id"])
                fhir.update({**resource, "status": "entered-in-error"}, if_match_version=resource["meta"]["versionId"])
                retired_refs.append(ref)
            for ref in plan["central_edited"]:
                temperature = temperature_of(fhir, links[ref.uid], TEMPERATURE_LOINC)
                resource = fhir.read(temperature["type"], temperature["id"])
                fhir.update({**resource, "valueQuantity": {**resource["valueQuantity"], "value": 38.2}},
                            if_match_version=resource["meta"]["versionId"])
            phases["outage_changes_s"] = round(time.monotonic() - t0, 1)
            counts = {k: len(v) for k, v in plan.items()} | {"site_new": len(new)}
            log(f"outage: {sum(counts.values())} changes {counts}")

            t0 = time.monotonic()
            poll_site(site)
            phases["catchup_site_poll_s"] = round(time.monotonic() - t0, 2)
            t1 = time.monotonic()
            found = check_deletions(site)
            phases["catchup_deletion_check_s"] = round(time.monotonic() - t1, 2)
            t1 = time.monotonic()
            poll_central()
            phases["catchup_central_poll_s"] = round(time.monotonic() - t1, 2)
            t1 = time.monotonic()
            statuses = run_open(site, set(ehrs), central_refs)
            poll_site(site)
            check_deletions(site)
            statuses_after = run_open(site, set(ehrs), central_refs)  # echoes only: must be empty
            phases["catchup_runs_s"] = round(time.monotonic() - t1, 1)
            phases["catchup_total_s"] = round(time.monotonic() - t0, 1)
            log(f"catch-up: {phases['catchup_total_s']} s, runs {statuses}, deletions found {found}")

            # Checked: every deletion and correction visible on the other side, reconcile clean.
            unapplied = 0
            for ref in plan["site_deleted"]:
                link = RecordLink.objects.get(site=site, versioned_object_uid=ref.uid)
                unapplied += not (link.deleted and all(is_retired(fhir.read(r["type"], r["id"]))
                                                       for r in link.fhir_resources))
            for ref in plan["site_corrected"]:
                temperature = temperature_of(fhir, links[ref.uid], TEMPERATURE_LOINC)
                unapplied += not is_retired(fhir.read(temperature["type"], temperature["id"]))
            for ref in retired_refs:
                try:
                    flat = cdr.get_composition(ref.ehr_id, ref.uid, flat=True).content
                    unapplied += any("body_temperature" in k for k in flat)
                except NotFound:
                    unapplied += ref.uid not in deleted_at_site
            # Per EHR of this bench: the site is shared, other work commits there in the same window.
            unaccounted, by_state = [], {}
            for ehr in ehrs:
                report = reconcile_site(site, started - timedelta(seconds=1), datetime.now(timezone.utc), ehr_id=ehr)
                unaccounted += report.unaccounted
                for state, versions in report.by_state.items():
                    by_state[state] = by_state.get(state, 0) + len(versions)
        result = {
            "host": info, "phases": phases, "changes": counts, "baseline_runs": baseline,
            "catchup_runs": statuses, "runs_after_catchup": statuses_after, "deletions_found": found,
            "deletions_and_corrections_not_applied": unapplied,
            "reconcile": {"unaccounted": unaccounted, **by_state},
            "method": "in process, one run at a time (advance), real EHRbase and HAPI; the outage is simulated by "
                      "not polling while the changes are made",
        }
    if args.out is None:
        path = dump("deletion_catchup", result)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        path = args.out
    log(f"wrote {path}: not applied {unapplied}, reconcile unaccounted {len(unaccounted)}")


def temperature_of(fhir, link, loinc: str) -> dict:
    for r in link.fhir_resources:
        if r["type"] == "Observation":
            coding = (fhir.vread(r["type"], r["id"], r["version"]).get("code") or {}).get("coding") or [{}]
            if coding[0].get("code") == loinc:
                return r
    raise LookupError("no temperature in the record")


if __name__ == "__main__":
    main()
