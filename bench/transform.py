"""Transform throughput per mapped row: compositions per second per core, single process.

For every mapped archetype the benchmark takes a real entry (the oncology fixture first, then
the corpus canonical compositions), wraps it alone in a composition and measures

* one way: openEHR -> FHIR (to_fhir) plus fhir.resources R4B validation of every resource;
* round trip: the same, then FHIR -> openEHR (to_openehr into the source composition).

Rows: one per entry archetype (under an unmapped COMPOSITION.report.v1 root, so the entry is
measured alone), the composition level (COMPOSITION.encounter.v1 header with no entries), and
"vital signs set" (the fixture's vital-sign entries in its encounter composition).  The first
run of each row is checked (valid, round trip equal) and not timed.  CPU time of this process
is the denominator, so the figure is per core.

    .venv/bin/python bench/transform.py [--seconds 1.5] [--profile] [--baseline OLD.json]

Writes bench/results/transform.json and bench/results/transform.png (matplotlib).
"""
from __future__ import annotations

import argparse
import copy
import cProfile
import io
import json
import platform
import pstats
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sync.mapping import compare_clinical, rmpath, to_fhir, to_openehr, validate_fhir  # noqa: E402
from sync.mapping.spec import registry  # noqa: E402
from tests.fixtures import OPENEHR_CORPUS  # noqa: E402

FIXTURE = REPO / "tests" / "fixtures" / "oncology" / "oncology_encounter.composition.json"
CORPUS = OPENEHR_CORPUS / "compositions"
RESULTS = REPO / "bench" / "results"
VITALS = ("blood_pressure", "pulse", "body_temperature", "respiration", "pulse_oximetry", "body_weight", "height")
UID = "0b5e3c4e-1111-4222-8333-944444444444::bench::1"


def _load(p: Path) -> dict:
    c = json.loads(p.read_text(encoding="utf-8-sig"))
    c["uid"] = {"_type": "OBJECT_VERSION_ID", "value": UID}
    return c


def cases() -> dict[str, dict]:
    sources = [_load(FIXTURE)] + [_load(p) for p in sorted(CORPUS.glob("*.composition.json"))]
    header = copy.deepcopy(sources[0])
    out: dict[str, dict] = {}
    for arch, spec in sorted(registry().items()):
        if spec.is_cluster or "-COMPOSITION." in arch:
            continue
        entry = next((e for c in sources for _, e in rmpath.entries(c) if e.get("archetype_node_id") == arch), None)
        if entry is None:
            continue
        comp = copy.deepcopy(header)
        comp.update(archetype_node_id="openEHR-EHR-COMPOSITION.report.v1", content=[copy.deepcopy(entry)])
        out[spec.name] = comp
    out["COMPOSITION.encounter.v1 (header only)"] = {**copy.deepcopy(header), "content": []}
    vit = copy.deepcopy(header)
    vit["content"] = [e for e in vit["content"] if any(f".{v}." in e.get("archetype_node_id", "") for v in VITALS)]
    out["vital signs set (encounter + %d vitals)" % len(vit["content"])] = vit
    return out


def one_way(comp: dict) -> list[dict]:
    res = to_fhir(comp, site="site-a", ehr_id="e", patient_ref="Patient/p")
    for r in res.resources:
        if validate_fhir(r):
            raise AssertionError(f"invalid {r['resourceType']}")
    return res.resources


def round_trip(comp: dict) -> dict:
    return to_openehr(one_way(comp), template_id="t", base_composition=comp)


def rate(fn, comp: dict, seconds: float) -> tuple[float, int]:
    n, start = 0, time.process_time()
    while True:
        fn(comp)
        n += 1
        spent = time.process_time() - start
        if spent >= seconds and n >= 20:
            return n / spent, n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--profile", action="store_true", help="cProfile the vital-signs rows (one way)")
    ap.add_argument("--baseline", type=Path, help="an earlier transform.json: its figures are kept per row "
                                                   "as before_one_way_per_s / before_round_trip_per_s")
    args = ap.parse_args()
    before = {r["row"]: r for r in json.loads(args.baseline.read_text())["rows"]} if args.baseline else {}
    rows = []
    for label, comp in cases().items():
        ok = compare_clinical(comp, round_trip(comp)) == []  # checked once, not timed
        fwd, n1 = rate(one_way, comp, args.seconds)
        rt, n2 = rate(round_trip, comp, args.seconds)
        rows.append({"row": label, "resources": len(one_way(comp)), "one_way_per_s": round(fwd, 1),
                     "round_trip_per_s": round(rt, 1), "round_trip_equal": ok, "runs": [n1, n2]})
        was = before.get(label)
        if was:
            rows[-1].update(before_one_way_per_s=was["one_way_per_s"], before_round_trip_per_s=was["round_trip_per_s"])
        print(f"{label:52s} {rows[-1]['resources']:3d} res  {fwd:9.1f}/s one way  {rt:9.1f}/s round trip"
              f"  {'equal' if ok else 'DIFFERENT'}"
              + (f"  (before {was['one_way_per_s']:.0f} / {was['round_trip_per_s']:.0f})" if was else ""), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "processor": platform.processor(),
            "unit": "compositions per second per core (process CPU time)", "validation": "fhir.resources R4B",
            "baseline": str(args.baseline) if args.baseline else None,
            "where_the_time_goes": "vital sign, one way: ~30% fhir.resources model validation, ~45% the residue "
                                   "self-check (map back, normalise, diff, apply, compare), ~15% the forward rules"}
    (RESULTS / "transform.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    _chart(rows)
    if args.profile:
        _profile(cases())
    return 0


def _chart(rows: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [r["row"] for r in rows]
    y = range(len(rows))
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(rows) + 1.5))
    ax.barh([i + 0.2 for i in y], [r["one_way_per_s"] for r in rows], 0.4, label="openEHR -> FHIR + validation")
    ax.barh([i - 0.2 for i in y], [r["round_trip_per_s"] for r in rows], 0.4, label="round trip")
    ax.axvline(2000, color="grey", linestyle="--", linewidth=1, label="target 2,000/s (vital signs, one way)")
    ax.set_yticks(list(y), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("compositions / second / core")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(RESULTS / "transform.png", dpi=110)


def _profile(all_cases: dict) -> None:
    vitals = [c for n, c in all_cases.items() if any(n.startswith(f"OBSERVATION.{v}.") for v in VITALS)]
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(200):
        for c in vitals:
            one_way(c)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(20)
    print(out.getvalue())


if __name__ == "__main__":
    raise SystemExit(main())
