"""End-to-end latency, site commit -> central resource readable: `.venv/bin/python bench/e2e_latency.py [--quick]`.

A load generator commits vital-signs compositions (sync/demo's
``vital_signs_composition``) at a fixed rate (default 10/s) round robin over
the EHRbase sites that answer on 8101.. (``--start-sites 5`` starts sites up to
5 with deploy/ehrbase.sh and stops the ones it started). The engine (w1 + w2
Celery nodes, 2 children each, beat for the sweeper, ``sync_poll_loop`` for
detection) syncs them to HAPI, against a scratch database and a private Redis.
Two phases: sites polled every 1 s, then every 30 s (the default; shorter).

Latency is measured from the moment the site answered the commit:
* for every event, to the end of the engine's ``write`` step (RunAttempt row;
  HAPI committed the transaction just before);
* for a sample (``--probe-every``), to the moment an outside reader first
  finds the record's Provenance at HAPI by id (written in the same
  transaction as the resources, so the resources are readable too), polled
  every ``--probe-interval`` s: the cross-check of the database figure.
Where the time goes: commit -> detected (poll), detected -> first step
(queue), first step -> written (steps), per-step means. Prints the figures,
writes bench/results/e2e_latency.json and bench/results/e2e_latency.png.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: sync, tests.harness
os.environ.setdefault("CONFLICTDESK_LOG_LEVEL", "WARNING")  # the bench prints its own lines
from tests import harness as E  # noqa: E402  (the one harness of the benchmarks and integration tests)


# The probe must not become load itself: with a backlog, each pending sample is re-read less often.
MAX_PROBE_READS_PER_S = 20


class Prober(threading.Thread):
    """Reads Provenance/<id of the source version> at HAPI until it exists, for each sampled commit.

    Resolution: ``interval`` + (pending samples / MAX_PROBE_READS_PER_S) s; it is coarse only when the
    latency is already many seconds.
    """

    def __init__(self, interval: float):
        super().__init__(daemon=True)
        self.interval, self.pending, self.seen, self.reads = interval, {}, {}, 0
        self._lock, self._halt = threading.Lock(), threading.Event()

    def add(self, version_uid: str) -> None:
        with self._lock:
            self.pending[version_uid] = time.time()

    def run(self):
        import httpx

        from sync.identity import provenance_id

        with httpx.Client(base_url=E.FHIR, timeout=10) as http:
            while not (self._halt.is_set() and not self.pending):
                with self._lock:
                    todo = list(self.pending)
                for v in todo:
                    time.sleep(1.0 / MAX_PROBE_READS_PER_S)
                    t0 = time.time()
                    try:
                        found = http.get(f"Provenance/{provenance_id(v)}").status_code == 200
                    except httpx.HTTPError:
                        found = False
                    self.reads += 1
                    if found:
                        with self._lock:
                            self.pending.pop(v, None)
                        self.seen[v] = (t0 + time.time()) / 2  # somewhere within this read
                if self._halt.is_set() and time.time() > self.deadline:
                    break
                time.sleep(self.interval)

    def finish(self, timeout: float) -> None:
        self.deadline = time.time() + timeout
        self._halt.set()
        self.join(timeout + 10)


def phase(sites, engine, *, poll: int, rate: float, seconds: float, probe_every: int, probe_interval: float):
    from sync.models import Site

    Site.objects.filter(pk__in=[s.pk for s, _ in sites]).update(poll_interval_seconds=poll)
    prober = Prober(probe_interval)
    prober.start()
    cpu = E.CpuMeter(engine)
    gen = E.LoadGenerator(sites, rate, seconds, seed=poll)
    load_avg = [E.loadavg()]
    thread = gen.start_background()
    sent = 0
    while thread.is_alive():
        thread.join(0.05)
        for c in gen.commits[sent:]:
            if sent % probe_every == 0:
                prober.add(c.version_uid)
            sent += 1
    for c in gen.commits[sent:]:
        if sent % probe_every == 0:
            prober.add(c.version_uid)
        sent += 1
    load_avg.append(E.loadavg())
    E.log(f"poll {poll}s, {rate}/s: {len(gen.commits)} commits at {rate}/s ({len(gen.failures)} failed), generator lateness "
          f"p99={gen.lateness().get('p99')} s; waiting for the engine")
    E.wait_done([c.version_uid for c in gen.commits], timeout=max(120, 3 * poll + seconds * 2), what=f"poll {poll}s")
    cpu_used = cpu.read()
    prober.finish(timeout=30)
    load_avg.append(E.loadavg())
    rows = E.run_timings(gen.commits)
    probes = {v: t for v, t in prober.seen.items()}
    return gen, rows, probes, load_avg, prober.reads, cpu_used


def analyse(gen, rows, probes) -> dict:
    done = [r for r in rows.values() if "written" in r]
    statuses = {}
    for r in rows.values():
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    written = [r["written"] - r["commit_end"] for r in done]
    from_start = [r["written"] - r["commit_start"] for r in done]
    detect = [r["detected"] - r["commit_end"] for r in done]
    queue = [r["first_step"] - r["detected"] for r in done]
    steps = [r["written"] - r["first_step"] for r in done]
    ack = [r["finished"] - r["commit_end"] for r in done if "finished" in r]
    per_step = {}
    for r in done:
        for step, d in r["steps"].items():
            per_step.setdefault(step, []).append(d)
    probed = [(probes[v] - rows[v]["commit_end"], rows[v]["written"] - rows[v]["commit_end"])
              for v in probes if v in rows and "written" in rows[v]]
    commit_took = [c.ended - c.started for c in gen.commits]
    return {
        "events": len(gen.commits), "failed_commits": len(gen.failures), "statuses": statuses,
        "commit_to_written_s": E.summary(written),
        "commit_start_to_written_s": E.summary(from_start),
        "commit_to_acknowledged_s": E.summary(ack),
        "probe_commit_to_readable_at_hapi_s": E.summary([p for p, _ in probed]),
        "probe_minus_db_written_s": E.summary([p - w for p, w in probed]),
        "breakdown_s": {"site_commit_call": E.summary(commit_took), "commit_to_detected": E.summary(detect),
                        "detected_to_first_step": E.summary(queue), "first_step_to_written": E.summary(steps)},
        "step_mean_s": {k: round(statistics.mean(v), 4) for k, v in per_step.items()},
        "step_p95_s": {k: round(E.percentile(v, 95), 4) for k, v in per_step.items()},
        "generator_lateness_s": gen.lateness(),
        "_series": sorted((r["commit_end"] - gen.started_at, r["written"] - r["commit_end"]) for r in done),
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = results["phases"]
    fig, axes = plt.subplots(1, len(phases) + 1, figsize=(5 * (len(phases) + 1), 4.5))
    for ax, (name, ph) in zip(axes, phases.items()):
        xs, ys = zip(*ph["_series"]) if ph["_series"] else ([], [])
        ax.scatter(xs, ys, s=6)
        s = ph["commit_to_written_s"]
        for p, style in (("p50", "-"), ("p99", "--")):
            if s.get(p) is not None:
                ax.axhline(s[p], linestyle=style, color="grey", label=f"{p} {s[p]:.2f} s")
        ax.set_title(f"{name}: commit -> central written")
        ax.set_xlabel("commit time in run (s)")
        ax.set_ylabel("latency (s)")
        ax.legend()
    ax = axes[-1]
    labels = list(phases)
    parts = ["commit_to_detected", "detected_to_first_step", "first_step_to_written"]
    bottom = [0.0] * len(labels)
    for part in parts:
        vals = [phases[n]["breakdown_s"][part].get("p50") or 0 for n in labels]
        ax.bar(labels, vals, bottom=bottom, label=part)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_title("median latency split")
    ax.set_ylabel("s")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="20 s at 1 s poll, 40 s at 30 s poll")
    ap.add_argument("--rate", type=float, default=10.0, help="events per second across the sites")
    ap.add_argument("--seconds", type=float, default=120.0, help="load duration at 1 s poll")
    ap.add_argument("--seconds-30", type=float, default=90.0, help="load duration at the 30 s poll")
    ap.add_argument("--ehrs-per-site", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=2, help="pool children per worker node (2 nodes)")
    ap.add_argument("--probe-every", type=int, default=4, help="probe HAPI for every n-th commit")
    ap.add_argument("--probe-interval", type=float, default=0.05, help="pause after each pass over the pending samples")
    ap.add_argument("--start-sites", type=int, default=0, help="start EHRbase sites up to N (stopped at the end)")
    ap.add_argument("--skip-30", action="store_true")
    ap.add_argument("--held-rate", type=float, default=E.HELD_RATE,
                    help="also run the 1 s poll at this rate (one the engine holds here), to split queueing from "
                         "the engine's own latency; 0 to skip")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.seconds_30 = 20.0, 40.0

    started_sites = E.start_sites(args.start_sites) if args.start_sites else []
    urls = E.running_sites()
    if not urls:
        print("no EHRbase site answers on 8101..", file=sys.stderr)
        return 2
    results = {"benchmark": "e2e_latency", "host": E.host_info(), "mode": "quick" if args.quick else "full",
               "sites": len(urls), "rate_per_s": args.rate, "workers": f"2 nodes x {args.concurrency} children",
               "detection": "manage.py sync_poll_loop", "phases": {},
               "command": "bench/e2e_latency.py" + (" --quick" if args.quick else ""), "tree": E.tree_state()}
    E.log(f"{len(urls)} site(s): {urls}; load average {E.loadavg()}")
    try:
        tmp = tempfile.mkdtemp(prefix="bench-e2e-")  # process logs stay there for a post-mortem
        E.log(f"logs in {tmp}")
        with E.scratch_database("e2e") as db_url, E.PrivateRedis(Path(tmp)) as redis:
            tag = uuid.uuid4().hex[:6]
            sites = E.setup_sites(urls, 1, args.ehrs_per_site, tag)
            with E.Engine(E.engine_env(db_url, redis.url, production=True, CONFLICTDESK_LOG_LEVEL="WARNING"), Path(tmp),
                          concurrency=args.concurrency) as engine:
                E.warm_up(sites)
                plan = [(1, args.rate, args.seconds)]
                plan += [(1, args.held_rate, args.seconds)] if args.held_rate else []
                plan += [] if args.skip_30 else [(30, args.rate, args.seconds_30)]
                for poll, rate, seconds in plan:
                    gen, rows, probes, load, reads, cpu = phase(sites, engine, poll=poll, rate=rate, seconds=seconds,
                                                           probe_every=args.probe_every,
                                                           probe_interval=args.probe_interval)
                    ph = analyse(gen, rows, probes)
                    ph.update({"poll_interval_s": poll, "rate_per_s": rate, "seconds": seconds, "loadavg": load, "probe_reads": reads,
                               "cpu_during_phase": cpu})
                    name = f"poll_{poll}s" if rate == args.rate else f"poll_{poll}s_at_{rate:g}_per_s"
                    results["phases"][name] = ph
                    s, b = ph["commit_to_written_s"], ph["breakdown_s"]
                    E.log(f"{name}: commit -> written p50={s.get('p50')} p95={s.get('p95')} p99={s.get('p99')} "
                          f"max={s.get('max')} (n={s['n']}); HAPI probe p50="
                          f"{ph['probe_commit_to_readable_at_hapi_s'].get('p50')} p99="
                          f"{ph['probe_commit_to_readable_at_hapi_s'].get('p99')}; split p50: detect "
                          f"{b['commit_to_detected'].get('p50')} queue {b['detected_to_first_step'].get('p50')} "
                          f"steps {b['first_step_to_written'].get('p50')}; statuses {ph['statuses']}")
                    E.log(f"  step means: {ph['step_mean_s']}")
                    E.log(f"  CPU: {cpu}")
                results["engine_alive_at_end"] = engine.alive()
    finally:
        if started_sites:
            E.stop_sites(started_sites)
    results["host"]["loadavg_at_end"] = E.loadavg()
    one = results["phases"].get("poll_1s", {}).get("commit_to_written_s", {})
    results["targets"] = {"p50<=0.8s": bool(one.get("p50") is not None and one["p50"] <= 0.8),
                          "p99<=2s": bool(one.get("p99") is not None and one["p99"] <= 2.0)}
    png = E.RESULTS / "e2e_latency.png"
    plot(results, png)
    for ph in results["phases"].values():
        ph["series_commit_offset_latency"] = [[round(a, 3), round(b, 3)] for a, b in ph.pop("_series")]
    path = E.dump("e2e_latency", results)
    print(f"\nwrote {path} and {png}")
    print(f"{'phase':10} {'n':>5} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}   (commit -> central written, s)")
    for label, ph in results["phases"].items():
        s = ph["commit_to_written_s"]
        print(f"{label:10} {s['n']:>5} {s.get('p50', 0):>7.3f} {s.get('p95', 0):>7.3f} {s.get('p99', 0):>7.3f} "
              f"{s.get('max', 0):>7.3f}")
    print(f"targets at 1 s: {results['targets']}; load average {results['host']['loadavg_at_start']} -> "
          f"{results['host']['loadavg_at_end']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
