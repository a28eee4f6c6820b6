"""Poll cost as the CDR grows: `.venv/bin/python bench/poll_cost.py [--sizes 200,20000] [--polls 40]`.

Issue 14: a site poll must cost what changed, not what the site holds. This
measures one site's poll at each size (compositions held by the CDR, every one
of them synced, i.e. with its RecordLink), in this process:

* quiet: nothing new since the cursor (the steady state of a 1 s poll);
* one new: one composition committed before each poll (a site at ~1 event/s);
* the deletion check (``check_deletions``, every few minutes, paged): it walks
  the site's links, so it grows with the site by design, and is reported apart;
* before (this commit's parent): the deletion pass the hot poll used to run
  every second (the whole live-id set in AQL pages + every RecordLink), for contrast.

Per poll: CPU seconds of this process (``time.process_time``: the engine's
side only, not EHRbase's), database statements, HTTP requests to the CDR, and
wall time (EHRbase's own AQL time is in it). The CDR is a dedicated EHRbase
site (``--site-port``, default 8103: ``deploy/ehrbase.sh start 3``), loaded
here up to each size (its compositions stay: a re-run continues from what it
holds, so the smaller size is only measured on a fresh site). The engine side
is a scratch database (dropped at the end). Writes bench/results/poll_cost.json.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.database import scratch_database  # noqa: E402
from tests.harness.report import dump, host_info, log, tree_state  # noqa: E402

COUNT_AQL = "SELECT COUNT(c/uid/value) AS n FROM EHR e CONTAINS COMPOSITION c"
LIVE_AQL = "SELECT c/uid/value AS version_uid FROM EHR e CONTAINS COMPOSITION c ORDER BY c/uid/value ASC"
EHR_COMPOSITIONS = ("SELECT e/ehr_id/value AS ehr_id, c/uid/value AS version_uid FROM EHR e CONTAINS COMPOSITION c "
                    "ORDER BY c/uid/value ASC")
PER_EHR = 200  # compositions per patient in the loaded CDR


class Counter:
    """Database statements (an execute wrapper) and CDR requests (a wrapped query/http), counted while on."""

    def __init__(self):
        self.sql = self.http = 0
        self.on = False

    def sql_wrapper(self, execute, sql, params, many, context):
        if self.on:
            self.sql += 1
        return execute(sql, params, many, context)


def cdr_count(cdr) -> int:
    return int(cdr.query(COUNT_AQL)[0]["n"])


def patiently(call):
    """A shared box: EHRbase or PostgreSQL may be restarted under us (a fresh CDR also races on its first user)."""
    from sync.clients.errors import TransientError

    for _ in range(20):
        try:
            return call()
        except TransientError:
            time.sleep(3)
    raise RuntimeError("the CDR kept failing")


def load_to(url: str, target: int, threads: int) -> float:
    """Commit vital-signs compositions until the CDR holds ``target``; returns the seconds it took."""
    from sync.clients.openehr import OpenEHRClient
    from tests.harness.load import commit
    from tests.harness.vitals import template_opt

    with OpenEHRClient(url) as cdr:
        cdr.upload_template(template_opt())
        missing = target - cdr_count(cdr)
    if missing <= 0:
        return 0.0
    log(f"loading {missing} compositions ({threads} threads)")
    t0 = time.monotonic()
    lock, done = threading.Lock(), [0]

    def worker(share: int) -> None:
        with OpenEHRClient(url) as cdr:
            ehr = None
            for i in range(share):
                if i % PER_EHR == 0:
                    ehr = patiently(lambda: cdr.create_ehr(subject_id=f"poll-bench-{uuid.uuid4().hex[:12]}",
                                                           subject_namespace="conflictdesk-bench").ehr_id)
                patiently(lambda: commit(cdr, ehr, 100 + i % 80))
                with lock:
                    done[0] += 1
                    if done[0] % 1000 == 0:
                        log(f"  {done[0]}/{missing} ({done[0] / (time.monotonic() - t0):.1f}/s)")

    shares = [missing // threads + (1 if k < missing % threads else 0) for k in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, shares))
    return time.monotonic() - t0


def mirror_links(cdr, site) -> int:
    """Engine-side state of a site whose every composition is synced: a PatientLink per EHR, a RecordLink each."""
    from sync.models import PatientLink, RecordLink

    RecordLink.objects.filter(site=site).delete()
    PatientLink.objects.filter(site=site).delete()
    patients, links, offset = {}, [], 0
    while True:
        rows = cdr.query(EHR_COMPOSITIONS, offset=offset, fetch=1000)
        for row in rows:
            ehr = row["ehr_id"]
            if ehr not in patients:
                patients[ehr] = PatientLink.objects.create(site=site, ehr_id=ehr, fhir_patient_id=f"p-{len(patients)}")
            vo = row["version_uid"].split("::", 1)[0]
            links.append(RecordLink(site=site, patient_link=patients[ehr], versioned_object_uid=vo,
                                    openehr_version_uid=row["version_uid"],
                                    fhir_resources=[{"type": "Observation", "id": vo[:8], "version": "1"}]))
        if len(rows) < 1000:
            break
        offset += len(rows)
    RecordLink.objects.bulk_create(links, batch_size=2000)
    return len(links)


def measure(fn, counter: Counter, n: int, before=None) -> dict:
    cpu, sql, http, wall = [], [], [], []
    for _ in range(n):
        if before:
            before()
        counter.sql = counter.http = 0
        counter.on = True
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        c1, w1 = time.process_time(), time.perf_counter()
        counter.on = False
        cpu.append(c1 - c0)
        wall.append(w1 - w0)
        sql.append(counter.sql)
        http.append(counter.http)
    return {
        "polls": n,
        "cpu_ms_median": round(1000 * statistics.median(cpu), 2),
        "cpu_ms_p95": round(1000 * sorted(cpu)[int(0.95 * (n - 1))], 2),
        "wall_ms_median": round(1000 * statistics.median(wall), 1),
        "sql_statements": sorted(set(sql)),
        "cdr_requests": sorted(set(http)),
    }


def legacy_deletion_pass(client, site) -> None:
    """What the hot poll ran every second before issue 14: the whole live set and every link."""
    from sync.detection import paged_query
    from sync.models import RecordLink

    linked = dict(RecordLink.objects.filter(site=site, deleted=False)
                  .values_list("versioned_object_uid", "patient_link__ehr_id"))
    live = {row["version_uid"].split("::", 1)[0] for row in paged_query(client, LIVE_AQL)}
    _ = set(linked) - live


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sites", default="200=8104,20000=8103",
                    help="SIZE=PORT,...: a dedicated EHRbase site per size (deploy/ehrbase.sh start N), loaded to SIZE")
    ap.add_argument("--polls", type=int, default=40)
    ap.add_argument("--load-threads", type=int, default=3)
    args = ap.parse_args()
    sites = [(int(size), f"http://127.0.0.1:{port}/ehrbase/rest/openehr/v1")
             for size, port in (pair.split("=") for pair in args.sites.split(","))]
    info = {**host_info(), "tree": tree_state(), "sites": dict((str(s), u) for s, u in sites),
            "python": platform.python_version()}
    results = []
    with scratch_database("pollcost"):
        from django.db import connection

        from sync.clients.openehr import OpenEHRClient
        from sync.detection import check_deletions, run_site_poll
        from sync.models import Cursor, Site
        from sync.workflow import dispatch
        from sync.workflow.services import Services, use_services
        from tests.harness.load import commit

        dispatch.send = lambda run_id, countdown: None  # no workers here: the runs are not the subject
        counter = Counter()
        for n, (size, url) in enumerate(sites):
            site = Site.objects.create(name=f"pollbench{n}", openehr_base_url=url, poll_interval_seconds=1,
                                       local_demo=True)
            client = OpenEHRClient(url)
            real_request = client.http.request

            def counted_request(*a, _real=real_request, **kw):
                if counter.on:
                    counter.http += 1
                return _real(*a, **kw)

            client.http.request = counted_request
            services = Services(fhir=None, openehr=lambda s, _c=client: _c, mapping=None, audit=None)
            with use_services(services), connection.execute_wrapper(counter.sql_wrapper):
                loaded = load_to(url, size, args.load_threads)
                held = cdr_count(client)
                links = mirror_links(client, site)
                Cursor.objects.update_or_create(source=f"site:{site.name}",
                                                defaults={"position": datetime.now(timezone.utc)})
                run_site_poll(site)  # warm: connections, imports
                log(f"size {held} compositions, {links} links: measuring {args.polls} polls each way")
                ehr = client.create_ehr(subject_id=f"poll-bench-new-{uuid.uuid4().hex[:8]}",
                                        subject_namespace="conflictdesk-bench").ehr_id
                counter.on = False
                row = {
                    "compositions": held, "record_links": links, "load_seconds": round(loaded, 1),
                    "quiet": measure(lambda: run_site_poll(site), counter, args.polls),
                    "one_new": measure(lambda: run_site_poll(site), counter, args.polls,
                                       before=lambda: commit(client, ehr, 120)),
                    "deletion_check": measure(lambda: check_deletions(site), counter, 3),
                    "before_issue_14_deletion_pass_per_poll": measure(lambda: legacy_deletion_pass(client, site),
                                                                      counter, 3),
                }
                results.append(row)
                for name in ("quiet", "one_new", "deletion_check", "before_issue_14_deletion_pass_per_poll"):
                    m = row[name]
                    log(f"  {name:40s} cpu {m['cpu_ms_median']:8.2f} ms (p95 {m['cpu_ms_p95']:.2f}), "
                        f"sql {m['sql_statements']}, cdr requests {m['cdr_requests']}, wall {m['wall_ms_median']} ms")
            client.close()
    path = dump("poll_cost", {"host": info, "sizes": results,
                              "method": "in-process; CPU = time.process_time of the engine's poll call only"})
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
