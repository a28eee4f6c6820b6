"""Reverse latency, central change -> site composition version readable: `.venv/bin/python bench/reverse_latency.py [--quick]`.

Own scratch database and private Redis; the engine (w1 + w2, 2 children each,
beat for the sweeper, ``sync_poll_loop`` polling the sites every 1 s and the
centre every ``--central-poll`` s) first syncs one vital-signs composition per
EHR to HAPI. Then, one edit every ``--every`` s, a synced Observation with a
numeric value is changed at HAPI by a PUT with If-Match (as a central user
would), and the site is read (``revision_history`` of the composition, every
``--probe-interval`` s) until the new composition version is there. Latency
is from HAPI's answer to the PUT to the first read that shows the new
version; the engine's own rows split it into detect (central poll), queue and
steps. Prints the figures, writes bench/results/reverse_latency.json and a PNG.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: sync, tests.harness
os.environ.setdefault("CONFLICTDESK_LOG_LEVEL", "WARNING")  # the bench prints its own lines
from tests import harness as E  # noqa: E402  (the one harness of the benchmarks and integration tests)


def numeric_observation(fhir, link):
    """One linked Observation with a valueQuantity, as HAPI has it now (or None)."""
    for r in link.fhir_resources:
        if r["type"] != "Observation":
            continue
        resource = fhir.read("Observation", r["id"])
        if "valueQuantity" in resource and isinstance(resource["valueQuantity"].get("value"), (int, float)):
            return resource
    return None


def edit_and_watch(link, fhir, cdr_for, probe_interval: float, timeout: float) -> dict:
    obs = numeric_observation(fhir, link)
    if obs is None:
        return {"record": link.versioned_object_uid, "skipped": "no numeric Observation"}
    site_client = cdr_for(link.site)
    ehr_id = link.patient_link.ehr_id
    before = len(site_client.revision_history(ehr_id, link.versioned_object_uid))
    changed = dict(obs)
    value = obs["valueQuantity"]["value"]
    changed["valueQuantity"] = {**obs["valueQuantity"], "value": round(value + 1, 1) if isinstance(value, float) else value + 1}
    changed.pop("meta", None)
    t_start = time.time()
    written = fhir.update(changed, if_match_version=obs["meta"]["versionId"])
    t_edit = time.time()
    deadline = t_edit + timeout
    seen = None
    reads = 0
    while time.time() < deadline:
        t0 = time.time()
        history = site_client.revision_history(ehr_id, link.versioned_object_uid)
        reads += 1
        if len(history) > before:
            seen = (t0 + time.time()) / 2
            break
        time.sleep(probe_interval)
    return {"record": link.versioned_object_uid, "site": link.site.name, "resource": f"Observation/{obs['id']}",
            "central_version": str(written.version_id) if hasattr(written, "version_id") else None,
            "edit_start": t_start, "edit_end": t_edit, "site_readable": seen, "site_reads": reads,
            "latency_s": (seen - t_edit) if seen else None}


def engine_split(edits) -> dict:
    """detect / queue / steps of the reverse runs, from ChangeEvent and RunAttempt rows."""
    from sync.models import RunAttempt, SyncRun

    detect, queue, steps, per_step = [], [], [], {}
    for e in edits:
        if not e.get("site_readable"):
            continue
        obj = e["resource"]
        run = (SyncRun.objects.filter(change_event__source_object_id=obj, direction="to_openehr")
               .select_related("change_event").order_by("-pk").first())
        if run is None:
            continue
        attempts = list(RunAttempt.objects.filter(run=run).order_by("started_at", "pk"))
        if not attempts:
            continue
        detected = run.change_event.detected_at.timestamp()
        detect.append(detected - e["edit_end"])
        queue.append(attempts[0].started_at.timestamp() - detected)
        writes = [a for a in attempts if a.step == "write"]
        if writes:
            steps.append(writes[-1].finished_at.timestamp() - attempts[0].started_at.timestamp())
        for a in attempts:
            per_step.setdefault(a.step, []).append((a.finished_at - a.started_at).total_seconds())
        e["run_status"] = run.status
    return {"edit_to_detected": E.summary(detect), "detected_to_first_step": E.summary(queue),
            "first_step_to_site_written": E.summary(steps),
            "step_mean_s": {k: round(statistics.mean(v), 4) for k, v in per_step.items()}}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat = [e["latency_s"] for e in results["edits"] if e.get("latency_s") is not None]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(range(1, len(lat) + 1), lat, "o-")
    a.set_title(f"central edit -> site version readable (central poll {results['central_poll_s']} s)")
    a.set_xlabel("edit #")
    a.set_ylabel("s")
    split = results["split_s"]
    parts = ["edit_to_detected", "detected_to_first_step", "first_step_to_site_written"]
    b.bar(parts, [split[p].get("p50") or 0 for p in parts])
    b.set_title("median split (s)")
    b.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="8 edits")
    ap.add_argument("--edits", type=int, default=30)
    ap.add_argument("--every", type=float, default=3.0, help="seconds between edits")
    ap.add_argument("--central-poll", type=int, default=1, help="CONFLICTDESK_CENTRAL_POLL_SECONDS for the run")
    ap.add_argument("--probe-interval", type=float, default=0.05)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--ehrs-per-site", type=int, default=2)
    args = ap.parse_args()
    if args.quick:
        args.edits = 8
    urls = E.running_sites()
    if not urls:
        print("no EHRbase site answers on 8101..", file=sys.stderr)
        return 2
    results = {"benchmark": "reverse_latency", "host": E.host_info(), "mode": "quick" if args.quick else "full",
               "tree": E.tree_state(), "sites": len(urls), "central_poll_s": args.central_poll,
               "workers": f"2 nodes x {args.concurrency} children",
               "command": "bench/reverse_latency.py" + (" --quick" if args.quick else "")}
    tmp = tempfile.mkdtemp(prefix="bench-reverse-")
    E.log(f"{len(urls)} site(s); logs in {tmp}; load average {E.loadavg()}")
    from_clients: dict = {}
    with E.scratch_database("reverse") as db_url, E.PrivateRedis(Path(tmp)) as redis:
        from sync.clients.fhir import FHIRClient
        from sync.clients.openehr import OpenEHRClient
        from sync.models import RecordLink

        def cdr_for(site):
            if site.name not in from_clients:
                from_clients[site.name] = OpenEHRClient(site.openehr_base_url, timeout=30)
            return from_clients[site.name]

        tag = uuid.uuid4().hex[:6]
        sites = E.setup_sites(urls, 1, args.ehrs_per_site, tag)
        with E.Engine(E.engine_env(db_url, redis.url, production=True, CONFLICTDESK_LOG_LEVEL="WARNING",
                                  CONFLICTDESK_CENTRAL_POLL_SECONDS=args.central_poll),
                      Path(tmp), concurrency=args.concurrency) as engine, FHIRClient(E.FHIR, timeout=30) as fhir:
            E.warm_up(sites)
            links = list(RecordLink.objects.select_related("site", "patient_link").order_by("pk"))
            cpu = E.CpuMeter(engine)
            edits, t_next = [], time.time()
            for i in range(args.edits):
                time.sleep(max(0.0, t_next - time.time()))
                t_next = time.time() + args.every
                edit = edit_and_watch(links[i % len(links)], fhir, cdr_for, args.probe_interval, timeout=60)
                edits.append(edit)
                E.log(f"edit {i + 1}: {edit.get('resource')} -> site version readable after "
                      f"{edit.get('latency_s') if edit.get('latency_s') is None else round(edit['latency_s'], 3)} s")
            results["cpu"] = cpu.read()
            time.sleep(2)
            results["split_s"] = engine_split(edits)
            results["engine_alive_at_end"] = engine.alive()
        for c in from_clients.values():
            c.close()
    lat = [e["latency_s"] for e in edits if e.get("latency_s") is not None]
    results["edits"] = edits
    results["edit_to_site_readable_s"] = E.summary(lat)
    results["not_seen_within_60s"] = sum(1 for e in edits if e.get("latency_s") is None and "skipped" not in e)
    results["host"]["loadavg_at_end"] = E.loadavg()
    png = E.RESULTS / "reverse_latency.png"
    plot(results, png)
    path = E.dump("reverse_latency", results)
    s = results["edit_to_site_readable_s"]
    print(f"\nwrote {path} and {png}")
    print(f"central edit -> site version readable: n={s['n']} p50={s.get('p50')} p95={s.get('p95')} p99={s.get('p99')} "
          f"max={s.get('max')} s; not seen in 60 s: {results['not_seen_within_60s']}")
    print("split:", {k: v.get("p50") if isinstance(v, dict) and "p50" in v else v for k, v in results["split_s"].items()})
    print(f"load average {results['host']['loadavg_at_start']} -> {results['host']['loadavg_at_end']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
