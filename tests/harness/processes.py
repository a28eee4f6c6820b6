"""Process accounting: every process the harness starts, and what it costs.

``ProcessSet`` starts each process in its own session (process group), logs
it to a file, and stops exactly those groups (SIGTERM, then SIGKILL), never
anything found by name. ``MemorySampler`` and ``CpuMeter`` read /proc (psutil
is not in the venv): RSS of each process and its pool children, and CPU
seconds by role (engine processes, HAPI, EHRbase, PostgreSQL, the load
generator, everyone else).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ProcessSet:
    """Named processes of ours, each the leader of its own process group; ``procs`` maps name -> Popen."""

    def __init__(self, workdir: Path, cwd: Path, env: dict):
        self.workdir, self.cwd, self.env = Path(workdir), cwd, env
        self.procs: dict[str, subprocess.Popen] = {}
        self.started: list[tuple[str, int, str]] = []  # (name, pid, log file) of every start, restarts included

    def spawn(self, name: str, args: list[str], log_name: str | None = None) -> subprocess.Popen:
        log = self.workdir / f"{log_name or name}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(args, cwd=self.cwd, env=self.env, start_new_session=True, stdout=out,
                                    stderr=subprocess.STDOUT)
        self.procs[name] = proc
        self.started.append((name, proc.pid, str(log)))
        return proc

    def alive(self) -> dict[str, bool]:
        return {name: p.poll() is None for name, p in self.procs.items()}

    def kill(self, name: str) -> None:
        """SIGKILL the whole group (a Celery node's pool and embedded beat with it)."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)

    def stop(self, *names: str, grace: float = 30) -> None:
        """SIGTERM the groups (all when no name is given), SIGKILL what outlives ``grace`` s."""
        chosen = [self.procs[n] for n in names] if names else list(self.procs.values())
        for p in chosen:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in chosen:
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(10)

    def pids_by_role(self) -> dict[int, str]:
        """Each live process of ours and its children, by name (a pool child is its node's)."""
        out = {}
        for name, p in self.procs.items():
            out[p.pid] = name
            for child in children(p.pid):
                out[child] = name
        return out


# --- /proc ------------------------------------------------------------------------------

def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class MemorySampler(threading.Thread):
    """RSS of each engine process and its pool children, every ``every`` s (``engine.procs``: name -> Popen)."""

    def __init__(self, engine, every: float = 1.0):
        super().__init__(daemon=True)
        self.engine, self.every, self.samples, self._halt = engine, every, [], threading.Event()

    def snapshot(self) -> dict:
        out = {}
        for name, p in self.engine.procs.items():
            out[f"{name}.main"] = rss_kb(p.pid) / 1024
            for i, child in enumerate(sorted(children(p.pid))):
                out[f"{name}.child{i}"] = rss_kb(child) / 1024
        return out

    def run(self):
        t0 = time.monotonic()
        while not self._halt.wait(self.every):
            self.samples.append({"t": round(time.monotonic() - t0, 1), **self.snapshot()})

    def stop(self) -> dict:
        self._halt.set()
        self.join(5)
        keys = sorted({k for s in self.samples for k in s if k != "t"})
        per = {k: {"max_mb": round(max(s.get(k, 0) for s in self.samples), 1),
                   "last_mb": round(self.samples[-1].get(k, 0), 1)} for k in keys} if self.samples else {}
        groups = {}
        for k, v in per.items():
            role = k.split(".")[0]
            role = "worker" if role in ("w1", "w2") else role
            groups.setdefault(role, 0.0)
            groups[role] += v["max_mb"]
        return {"per_process": per, "sum_of_max_by_role_mb": {k: round(v, 1) for k, v in groups.items()},
                "samples": len(self.samples)}


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_table(engine) -> dict[int, tuple[str, float]]:
    """pid -> (role, CPU seconds): the process's own and that of its children that ended and were reaped.

    The children's share matters: a PostgreSQL backend whose connection closed is gone from /proc, its
    CPU only in the postmaster's cutime/cstime. Without it, the engine's backends (one per task while
    Celery closed the connection after each) were left out of PostgreSQL's figure."""
    ours = {}
    if engine is not None:
        for pid, name in engine.processes.pids_by_role().items():
            ours[pid] = "engine.worker" if name in ("w1", "w2") else f"engine.{name}"
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime: fields 14-17 of proc_pid_stat(5)
        if pid in ours:
            role = ours[pid]
        elif pid == os.getpid():
            role = "bench (load generator, probes)"
        elif "hapi-fhir" in cmd:
            role = "hapi"
        elif "ehrbase" in cmd and "java" in cmd:
            role = "ehrbase"
        elif stat.split("(", 1)[1].startswith("postgres"):
            role = "postgres"
        else:
            role = "other (not ours)"
        table[pid] = (role, ticks / _TICK)
    return table


class CpuMeter:
    """CPU seconds per role (engine processes, HAPI, EHRbase, PostgreSQL, everyone else) between two snapshots."""

    def __init__(self, engine):
        self.engine, self.start = engine, _cpu_table(engine)
        self.t0 = time.monotonic()

    def read(self) -> dict:
        end, wall = _cpu_table(self.engine), time.monotonic() - self.t0
        roles: dict[str, float] = {}
        for pid, (role, secs) in end.items():
            before = self.start.get(pid)
            delta = secs - (before[1] if before else 0.0)
            roles[role] = roles.get(role, 0.0) + max(0.0, delta)
        return {"wall_s": round(wall, 1), "cpu_s": {k: round(v, 1) for k, v in sorted(roles.items(), key=lambda x: -x[1])},
                "cores_busy": round(sum(roles.values()) / wall, 2) if wall else None}
