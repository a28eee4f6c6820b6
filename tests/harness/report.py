"""What a benchmark prints and writes: log lines, host facts, the tree it ran, bench/results/<name>.json."""
from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from .stats import summary

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def dump(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    return path


def host_info() -> dict:
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_at_start": loadavg(),
            "mem_total_mb": int(Path("/proc/meminfo").read_text().split()[1]) // 1024,
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "jvm_flags": server_jvm_flags()}


# HAPI FHIR and the EHRbase sites a benchmark may use, by port.
SERVER_PORTS = {"hapi": 8090, **{f"ehrbase_site{i}": 8100 + i for i in range(1, 6)}}


def listener(port: int) -> list[int]:
    """The pid listening on a local TCP port (a server JVM), or none."""
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True).stdout
    return sorted({int(p) for p in re.findall(r"pid=(\d+)", out)})[:1]


def jvm_flags(pid: int) -> list[str]:
    """The -X options a JVM runs with (its JIT tiers and heap), from its command line."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []
    return [a for a in args if a.startswith("-X")]


def server_jvm_flags() -> dict[str, list[str]]:
    """Each running server's JVM options: a figure measured with C1 only (-XX:TieredStopAtLevel=1) says so."""
    return {name: jvm_flags(pid) for name, port in SERVER_PORTS.items() for pid in listener(port)}


def tree_state() -> dict:
    """The code the engine ran: HEAD and any uncommitted engine files (other engineers edit the tree)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--short", "sync", "audit", "conflictdesk"], cwd=REPO, capture_output=True,
                           text=True).stdout.split("\n")
    return {"head": head, "uncommitted_engine_files": [d.strip() for d in dirty if d.strip()]}


class WebPoller(threading.Thread):
    """Prometheus-like scraper: GET /metrics and /healthz every ``every`` s, so the web process has work."""

    def __init__(self, port: int, every: float = 2.0):
        super().__init__(daemon=True)
        self.port, self.every, self.ok, self.failed, self.times = port, every, 0, 0, []
        self._halt = threading.Event()

    def run(self):
        while not self._halt.wait(self.every):
            for path in ("/metrics", "/healthz"):
                req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                             headers={"Authorization": "Bearer bench"})
                t0 = time.monotonic()
                try:
                    with urllib.request.urlopen(req, timeout=10) as r:
                        r.read()
                    self.ok += 1
                    self.times.append(time.monotonic() - t0)
                except OSError:
                    self.failed += 1

    def stop(self) -> dict:
        self._halt.set()
        self.join(15)
        return {"requests_ok": self.ok, "requests_failed": self.failed, "latency_s": summary(self.times)}
