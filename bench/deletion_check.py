"""The deletion check's cost, per site and per EHR: `.venv/bin/python bench/deletion_check.py [--site-url URL]`.

Issue 14 asked for a deletion check that is O(changes), not O(EHRs). It now
reads a site's live set with one paged AQL per site (``check_deletions``); it
used to ask one AQL per EHR. This measures both on one EHRbase site as it is
(every composition it holds mirrored as synced, as bench/poll_cost.py does),
in this process: CPU of the engine's call, database statements, CDR requests,
wall time. A CDR of many small EHRs is where the two differ most. Writes
bench/results/deletion_check.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.poll_cost import Counter, cdr_count, measure, mirror_links  # noqa: E402
from tests.harness.database import scratch_database  # noqa: E402
from tests.harness.report import dump, host_info, log, tree_state  # noqa: E402

PER_EHR_AQL = ("SELECT c/uid/value AS version_uid FROM EHR e CONTAINS COMPOSITION c WHERE e/ehr_id/value = $ehr_id "
               "ORDER BY c/uid/value ASC")


def per_ehr_check(client, site) -> None:
    """What the check did before: one (paged) AQL per linked EHR, its live set against its links."""
    from sync.detection import paged_query
    from sync.models import PatientLink, RecordLink

    for patient_id, ehr_id in PatientLink.objects.filter(site=site).values_list("pk", "ehr_id"):
        linked = set(RecordLink.objects.filter(site=site, patient_link_id=patient_id, deleted=False)
                     .values_list("versioned_object_uid", flat=True))
        live = {row["version_uid"].split("::", 1)[0] for row in paged_query(client, PER_EHR_AQL, {"ehr_id": ehr_id})}
        _ = linked - live


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--site-url", default="http://127.0.0.1:8101/ehrbase/rest/openehr/v1")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    info = {**host_info(), "tree": tree_state(), "site": args.site_url}
    with scratch_database("delcheck"):
        from django.db import connection

        from sync.clients.openehr import OpenEHRClient
        from sync.detection import check_deletions
        from sync.models import PatientLink, Site
        from sync.workflow.services import Services, use_services

        counter = Counter()
        site = Site.objects.create(name="delcheck", openehr_base_url=args.site_url, local_demo=True)
        client = OpenEHRClient(args.site_url)
        real_request = client.http.request

        def counted_request(*a, **kw):
            if counter.on:
                counter.http += 1
            return real_request(*a, **kw)

        client.http.request = counted_request
        services = Services(fhir=None, openehr=lambda s: client, mapping=None, audit=None)
        with use_services(services), connection.execute_wrapper(counter.sql_wrapper):
            held, links = cdr_count(client), mirror_links(client, site)
            ehrs = PatientLink.objects.filter(site=site).count()
            log(f"{held} compositions, {links} links over {ehrs} EHRs")
            row = {"compositions": held, "record_links": links, "ehrs": ehrs,
                   "one_paged_aql_per_site": measure(lambda: check_deletions(site), counter, args.repeat),
                   "before_one_aql_per_ehr": measure(lambda: per_ehr_check(client, site), counter, args.repeat)}
        client.close()
        for name in ("one_paged_aql_per_site", "before_one_aql_per_ehr"):
            m = row[name]
            log(f"  {name:26s} cpu {m['cpu_ms_median']:9.1f} ms, sql {m['sql_statements']}, "
                f"cdr requests {m['cdr_requests']}, wall {m['wall_ms_median']} ms")
    path = dump("deletion_check", {"host": info, **row,
                                   "method": "in-process; CPU = time.process_time of the engine's call only"})
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
