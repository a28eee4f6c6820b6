"""The shared EHRbase sites on 8101.. : which answer, and starting or stopping only those a run started."""
from __future__ import annotations

import os
import signal
import subprocess
import urllib.request

from .engine import REPO

SITE_URL = "http://127.0.0.1:{port}/ehrbase/rest/openehr/v1"


def running_sites(limit: int = 9) -> list[str]:
    """Base URLs of the EHRbase sites answering on 8101.. (loopback)."""
    urls = []
    for i in range(1, limit + 1):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{8100 + i}/ehrbase/rest/status", timeout=3):
                urls.append(SITE_URL.format(port=8100 + i))
        except OSError:
            continue
    return urls


def _numbers(urls: list[str]) -> set[int]:
    return {int(u.split(":")[2].split("/")[0]) - 8100 for u in urls}


def start_sites(n: int) -> list[int]:
    """``deploy/ehrbase.sh start n`` with production JVM options (leaves running sites alone); the sites it started.

    The script's default JVM is C1 only (fast start-up, slower steady state): right for test servers,
    wrong for a benchmark.
    """
    before = _numbers(running_sites())
    env = {**os.environ, "EHRBASE_JVM": "production"}
    subprocess.run(["deploy/ehrbase.sh", "start", str(n)], cwd=REPO, check=True, timeout=900, env=env)
    return sorted(_numbers(running_sites()) - before)


def stop_sites(numbers: list[int]) -> None:
    """Stop only the sites this run started, by the pid files deploy/ehrbase.sh wrote."""
    for i in numbers:
        pidfile = REPO / ".run" / f"ehrbase-site{i}.pid"
        if pidfile.exists():
            pid = int(pidfile.read_text().strip())
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            pidfile.unlink(missing_ok=True)
