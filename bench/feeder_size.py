"""How big FHIR-born compositions get: every FHIR file of the vendored corpus through from_fhir.

Issue 21 keeps what no archetype element holds in each entry's FEEDER_AUDIT (the source resources as FHIR
JSON, DV_PARSABLE) and in the composition's; EHRbase stores the composition as one JSON document.  Per
file: the composition's canonical JSON size, the feeder audits' share, and the largest single
original_content.  The largest cases are the ones tests/integration/test_fhir_born_real.py stores at a
real EHRbase (its ACCEPTED list and the lab report).  No server needed.

    .venv/bin/python bench/feeder_size.py

Prints the figures and writes bench/results/feeder_size.json.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conflictdesk.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")  # development defaults (the settings are production unless asked)

import django  # noqa: E402

django.setup()

from sync.mapping import from_fhir, rmpath  # noqa: E402
from sync.mapping.errors import MappingError  # noqa: E402
from tests.harness import report  # noqa: E402

CORPUS = REPO / "tests" / "fixtures" / "corpus" / "fhir"


def _feeders(composition: dict) -> list[int]:
    """The size in bytes (UTF-8) of every original_content: the composition's and each entry's."""
    nodes = [composition] + [e for _, e in rmpath.entries(composition)]
    return [len(((n.get("feeder_audit") or {}).get("original_content") or {}).get("value", "").encode())
            for n in nodes if (n.get("feeder_audit") or {}).get("original_content")]


def measure(path: Path) -> dict | None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    sent = [e["resource"] for e in doc.get("entry", [])] if doc.get("resourceType") == "Bundle" else [doc]
    try:
        comp = from_fhir(sent, template_id="t").composition
    except MappingError:
        return None  # nothing mapped: no composition
    feeders = _feeders(comp)
    return {"file": path.name, "source_bytes": len(json.dumps(doc, ensure_ascii=False).encode()),
            "composition_bytes": len(json.dumps(comp, ensure_ascii=False).encode()),
            "feeder_bytes": sum(feeders), "largest_original_content_bytes": max(feeders, default=0),
            "feeder_audits": len(feeders)}


def main() -> None:
    rows = [r for r in map(measure, sorted(CORPUS.glob("*.json"))) if r]
    rows.sort(key=lambda r: -r["composition_bytes"])
    for r in rows:
        print(f"{r['file']:<55} composition {r['composition_bytes']:>8,} B, feeder audits {r['feeder_bytes']:>8,} B "
              f"({r['feeder_audits']}), largest {r['largest_original_content_bytes']:>7,} B")
    top = rows[0]
    summary = {"files": len(rows), "largest_composition": top["file"], "largest_composition_bytes":
               top["composition_bytes"], "largest_original_content_bytes":
               max(r["largest_original_content_bytes"] for r in rows)}
    print(summary)
    path = report.dump("feeder_size", {"summary": summary, "rows": rows, "host": report.host_info()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
