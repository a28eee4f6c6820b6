"""bench/cpu_split.py's arithmetic: per-phase CPU per run, and the figures net of a shared server's background."""
from itertools import count

from bench import cpu_split


def test_a_phase_is_charged_its_own_cpu_and_the_background_is_taken_out(monkeypatch):
    ticks = count()  # each sample of a process: one more CPU second than the last
    clock = iter([0.0, 4.0,   # idle: 4 s of wall
                  4.0, 6.0])  # engine_run: 2 s of wall
    monkeypatch.setattr(cpu_split, "cpu_seconds", lambda pid: float(next(ticks)))
    monkeypatch.setattr(cpu_split.time, "monotonic", lambda: next(clock))
    split = cpu_split.Split({"server": lambda: [1]})
    with split.window("idle"):
        pass  # samples 0 -> 1: 1 CPU s in 4 s of wall: a background of 0.25 CPU s/s
    with split.window("engine_run"):
        pass  # samples 2 -> 3: 1 CPU s in 2 s of wall
    assert split.per_run_ms(runs=2)["engine_run"] == {"server": 500.0, "total": 500.0, "wall_ms": 1000.0}
    # 1 CPU s measured less 2 s x 0.25 CPU s/s of background, over 2 runs
    assert split.net_ms(runs=2) == {"engine_run": {"server": 250.0, "total": 250.0}}
