"""CPU seconds per component while a benchmark runs, read from /proc (Linux, run as the servers' user or root).

A component is a name and a way to find its processes now: the engine (this process), a
server JVM (the process listening on its port), or PostgreSQL backends (by the database they
serve, or the engine's own connection). ``Split.window()`` adds each component's CPU time
(user + system, every thread) over a block to a running total, so a benchmark can split its
runs into phases (the load generator's commit at the site, the engine's run) and report the
mean per run. The machine may be shared: a server's CPU includes whatever else asked it
something during the window. An ``idle`` phase (a pause in which the benchmark asks nothing)
measures that background rate per second, and ``net_ms`` subtracts it, scaled to each phase's
wall time, from the phase's figures: an estimate, as good as the background is steady.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 for one that is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after "(comm)", which may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime: fields 14 and 15 of stat(5)


def backends(connection, *databases: str) -> Callable[[], list[int]]:
    """PostgreSQL backends serving ``databases`` (the servers' pools), found afresh at each sample."""

    def pids() -> list[int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
                           [list(databases)])
            return [row[0] for row in cursor.fetchall()]

    return pids


def own_backend(connection) -> Callable[[], list[int]]:
    """The engine's own PostgreSQL backend (its connection in this process)."""
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    return lambda: [pid]


class Split:
    """Running totals of CPU seconds per component, over the windows a benchmark measures."""

    def __init__(self, components: dict[str, Callable[[], list[int]]]):
        self.components = components
        self.totals: dict[str, dict[str, float]] = {}
        self.wall: dict[str, float] = {}

    def _sample(self) -> dict[str, dict[int, float]]:
        return {name: {pid: cpu_seconds(pid) for pid in find()} for name, find in self.components.items()}

    @contextmanager
    def window(self, phase: str):
        """Add the CPU each component spent during the block to ``phase``'s totals."""
        before, started = self._sample(), time.monotonic()
        yield
        after = self._sample()
        self.wall[phase] = self.wall.get(phase, 0.0) + time.monotonic() - started
        totals = self.totals.setdefault(phase, {})
        for name, now in after.items():
            spent = sum(now[pid] - before[name].get(pid, 0.0) for pid in now)
            totals[name] = totals.get(name, 0.0) + spent

    def per_run_ms(self, runs: int) -> dict[str, dict[str, float]]:
        """Mean CPU milliseconds per run, per phase and component (``total`` summed over components)."""
        report = {}
        for phase, totals in self.totals.items():
            ms = {name: round(seconds * 1000 / runs, 1) for name, seconds in totals.items()}
            wall_ms = round(self.wall[phase] * 1000 / runs, 1)
            report[phase] = {**ms, "total": round(sum(ms.values()), 1), "wall_ms": wall_ms}
        return report

    def net_ms(self, runs: int, baseline: str = "idle") -> dict[str, dict[str, float]]:
        """Per run, each phase's CPU less the ``baseline`` phase's rate per wall second over the phase's wall time."""
        rate = {name: s / self.wall[baseline] for name, s in self.totals[baseline].items()}
        report = {}
        for phase, totals in self.totals.items():
            if phase == baseline:
                continue
            ms = {name: round(max(0.0, s - rate[name] * self.wall[phase]) * 1000 / runs, 1)
                  for name, s in totals.items()}
            report[phase] = {**ms, "total": round(sum(ms.values()), 1)}
        return report
