"""Treatment plan flow-back latency (issue 17): `.venv/bin/python bench/plan_flowback_latency.py [--quick]`.

Own scratch database and private Redis; the engine (2 nodes, 2 children each, ``sync_poll_loop`` polling the
sites every 1 s and the centre every ``--central-poll`` s) first syncs one composition per EHR (warm-up:
central Patients, warm workers), then one patient is made known at two sites (both EHRs' PatientLinks name
the same central Patient) and the sites write centrally with the oncology template v2. Every ``--every`` s
a tumour board plan is created at HAPI in one transaction (CarePlan + chemotherapy MedicationRequest and
radiotherapy ServiceRequest basedOn it + Goal), and the sites are watched until both have acknowledged a
composition of that plan (RecordLink) and the composition is readable at each CDR. Latency is from HAPI's
answer to the transaction to the later of the two reads. Prints the figures and writes
bench/results/plan_flowback_latency.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: sync, tests.harness
os.environ.setdefault("CONFLICTDESK_LOG_LEVEL", "WARNING")  # the bench prints its own lines
from tests import harness as E  # noqa: E402  (the one harness of the benchmarks and integration tests)

TEMPLATE = "ConflictDesk Oncology Encounter.v2"


def tumour_board(pid: str, n: int) -> dict:
    """The plan of tests/integration/test_treatment_plan_flows_back.py (synthetic)."""
    urn = {k: f"urn:uuid:{uuid.uuid4()}" for k in ("plan", "chemo", "rt", "goal")}
    subject = {"reference": f"Patient/{pid}"}
    resources = [
        (urn["plan"], {"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": subject,
                       "title": f"Tumour board plan {n}", "description": "4 cycles AC, then adjuvant radiotherapy",
                       "activity": [{"reference": {"reference": urn["chemo"]}}, {"reference": {"reference": urn["rt"]}}],
                       "goal": [{"reference": urn["goal"]}]}),
        (urn["chemo"], {"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": subject,
                        "basedOn": [{"reference": urn["plan"]}],
                        "medicationCodeableConcept": {"text": "cyclophosphamide", "coding": [
                            {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "3002"}]}}),
        (urn["rt"], {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": subject,
                     "basedOn": [{"reference": urn["plan"]}], "code": {"text": "Adjuvant radiotherapy"}}),
        (urn["goal"], {"resourceType": "Goal", "lifecycleStatus": "active", "subject": subject,
                       "description": {"text": "Disease-free at 5 years"}}),
    ]
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"fullUrl": u, "resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
                      for u, r in resources]}


def create_and_watch(fhir, cdr_for, pid: str, n: int, probe: float, timeout: float) -> dict:
    from sync.models import RecordLink

    answer = fhir.transaction(tumour_board(pid, n), representation=True)
    t_commit = time.time()
    plan_id = next(e.id for e in answer.entries if e.resource_type == "CarePlan")
    deadline, seen = t_commit + timeout, {}
    while time.time() < deadline and len(seen) < 2:
        for link in RecordLink.objects.filter(fhir_resources__contains=[{"type": "CarePlan", "id": plan_id}]) \
                .select_related("site", "patient_link"):
            if link.site.name in seen:
                continue
            cdr_for(link.site).get_composition(link.patient_link.ehr_id, link.openehr_version_uid)
            seen[link.site.name] = time.time()
        time.sleep(probe)
    done = max(seen.values()) if len(seen) == 2 else None
    return {"plan": f"CarePlan/{plan_id}", "committed": t_commit, "sites_readable": seen,
            "latency_s": (done - t_commit) if done else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="8 plans")
    ap.add_argument("--plans", type=int, default=30)
    ap.add_argument("--every", type=float, default=3.0, help="seconds between plans")
    ap.add_argument("--central-poll", type=int, default=1, help="CONFLICTDESK_CENTRAL_POLL_SECONDS for the run")
    ap.add_argument("--probe-interval", type=float, default=0.05)
    ap.add_argument("--concurrency", type=int, default=2)
    args = ap.parse_args()
    if args.quick:
        args.plans = 8
    urls = E.running_sites()[:2]
    if len(urls) < 2:
        print("two EHRbase sites are needed (8101, 8102)", file=sys.stderr)
        return 2
    results = {"benchmark": "plan_flowback_latency", "host": E.host_info(), "mode": "quick" if args.quick else "full",
               "tree": E.tree_state(), "sites": len(urls), "central_poll_s": args.central_poll,
               "workers": f"2 nodes x {args.concurrency} children",
               "command": "bench/plan_flowback_latency.py" + (" --quick" if args.quick else "")}
    tmp = tempfile.mkdtemp(prefix="bench-plan-")
    E.log(f"{len(urls)} sites; logs in {tmp}; load average {E.loadavg()}")
    clients: dict = {}
    with E.scratch_database("plan") as db_url, E.PrivateRedis(Path(tmp)) as redis:
        from sync.clients.fhir import FHIRClient
        from sync.clients.openehr import OpenEHRClient
        from sync.models import PatientLink, Site

        def cdr_for(site):
            if site.name not in clients:
                clients[site.name] = OpenEHRClient(site.openehr_base_url, timeout=30)
            return clients[site.name]

        sites = E.setup_sites(urls, 1, 1, uuid.uuid4().hex[:6])
        with E.Engine(E.engine_env(db_url, redis.url, production=True, CONFLICTDESK_LOG_LEVEL="WARNING",
                                  CONFLICTDESK_CENTRAL_POLL_SECONDS=args.central_poll),
                      Path(tmp), concurrency=args.concurrency) as engine, FHIRClient(E.FHIR, timeout=30) as fhir:
            E.warm_up(sites)
            Site.objects.filter(pk__in=[s.pk for s, _ in sites]).update(template_ids=[TEMPLATE])
            first, second = (PatientLink.objects.get(site=s, ehr_id=ehrs[0]) for s, ehrs in sites)
            PatientLink.objects.filter(pk=second.pk).update(fhir_patient_id=first.fhir_patient_id)
            cpu = E.CpuMeter(engine)
            plans, t_next = [], time.time()
            for i in range(args.plans):
                time.sleep(max(0.0, t_next - time.time()))
                t_next = time.time() + args.every
                plan = create_and_watch(fhir, cdr_for, first.fhir_patient_id, i, args.probe_interval, timeout=60)
                plans.append(plan)
                lat = plan["latency_s"]
                E.log(f"plan {i + 1}: {plan['plan']} at both sites after {lat if lat is None else round(lat, 3)} s")
            results["cpu"] = cpu.read()
            results["engine_alive_at_end"] = engine.alive()
        for c in clients.values():
            c.close()
    lat = [p["latency_s"] for p in plans if p.get("latency_s") is not None]
    results["plans"] = plans
    results["central_commit_to_both_sites_readable_s"] = E.summary(lat)
    results["not_seen_within_60s"] = sum(1 for p in plans if p.get("latency_s") is None)
    results["host"]["loadavg_at_end"] = E.loadavg()
    path = E.dump("plan_flowback_latency", results)
    s = results["central_commit_to_both_sites_readable_s"]
    print(f"\nwrote {path}")
    print(f"central plan -> both sites readable: n={s['n']} p50={s.get('p50')} p95={s.get('p95')} max={s.get('max')} s; "
          f"not seen in 60 s: {results['not_seen_within_60s']}")
    print(f"load average {results['host']['loadavg_at_start']} -> {results['host']['loadavg_at_end']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
