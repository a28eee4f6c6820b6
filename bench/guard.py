"""Cost of the runtime round-trip guard (sync/workflow/guard.py) per mapped row.

Same rows as bench/transform.py.  Per row, CPU time per composition of

* transform: to_fhir + fhir.resources R4B validation of every resource (bench/transform.py "one way",
  what the engine spends on a composition between reading it and writing it);
* transform + guard: the same, then ``guard.check_forward`` (map back without the base, compare);

and the guard's share: (transform + guard) / transform - 1.  Target: <= 1/3.  Timings interleave the
two variants in rounds and take the median of the rounds, so host load (other sessions) hits both alike.

    .venv/bin/python bench/guard.py [--seconds 0.6] [--rounds 5]

Writes bench/results/guard.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conflictdesk.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")  # development defaults (the settings are production unless asked)

import django  # noqa: E402

django.setup()  # guard.py lives in the engine (it imports the models for the site's mode)

from transform import RESULTS, cases  # noqa: E402

from sync import mapping  # noqa: E402
from sync.mapping import to_fhir, validate_fhir  # noqa: E402
from sync.workflow import guard  # noqa: E402


def transform(comp: dict):
    res = to_fhir(comp, site="site-a", ehr_id="e", patient_ref="Patient/p")
    for r in res.resources:
        if validate_fhir(r):
            raise AssertionError(f"invalid {r['resourceType']}")
    return res


def guarded(comp: dict):
    res = transform(comp)
    check = guard.check_forward(mapping, comp, res.resources, res.losses)
    if check.undeclared:
        raise AssertionError(f"guard: {len(check.undeclared)} undeclared")
    return res


def per_call(fn, comp: dict, seconds: float) -> float:
    n, start = 0, time.process_time()
    while True:
        fn(comp)
        n += 1
        spent = time.process_time() - start
        if spent >= seconds and n >= 10:
            return spent / n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=0.6, help="per variant per round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    rows = []
    for label, comp in cases().items():
        guarded(comp)  # checked once (no undeclared difference on real data), not timed
        t, g = [], []
        for _ in range(args.rounds):
            t.append(per_call(transform, comp, args.seconds))
            g.append(per_call(guarded, comp, args.seconds))
        tm, gm = statistics.median(t), statistics.median(g)
        rows.append({"row": label, "transform_ms": round(tm * 1000, 3), "transform_guard_ms": round(gm * 1000, 3),
                     "guard_ms": round((gm - tm) * 1000, 3), "overhead": round(gm / tm - 1, 3)})
        print(f"{label:52s} transform {tm * 1000:7.3f} ms  + guard {gm * 1000:7.3f} ms  "
              f"overhead {100 * (gm / tm - 1):5.1f}%", flush=True)
    total_t = sum(r["transform_ms"] for r in rows)
    total_g = sum(r["transform_guard_ms"] for r in rows)
    summary = {"overhead_all_rows": round(total_g / total_t - 1, 3),
               "overhead_median_row": statistics.median(r["overhead"] for r in rows),
               "overhead_max_row": max(r["overhead"] for r in rows), "target": round(1 / 3, 3)}
    print(json.dumps(summary))
    meta = {"python": platform.python_version(), "machine": platform.machine(), "load_avg": os.getloadavg(),
            "unit": "ms CPU per composition (process time), median of rounds",
            "transform": "to_fhir + fhir.resources R4B validation", "guard": "guard.check_forward"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "guard.json").write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
