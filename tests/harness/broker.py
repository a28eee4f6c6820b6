"""A private redis-server: the engine's broker, ours alone, on a free loopback port.

Never the shared 6379: another engineer's worker on it would take our hints
and look for our run ids in its own database. No persistence, so a restart
loses every queued message (what the broker-restart fault test wants).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from .processes import free_port
from .waits import wait_for


class PrivateRedis:
    def __init__(self, workdir: Path, port: int | None = None):
        self.workdir, self.port = Path(workdir), port or free_port()
        self.pidfile = self.workdir / f"redis-{self.port}.pid"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cli(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=10)

    def alive(self) -> bool:
        return self.cli("ping").stdout.strip() == "PONG"

    def start(self) -> "PrivateRedis":
        if self.alive():
            raise RuntimeError(f"port {self.port} already has a redis")
        subprocess.run(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "yes",
             "--pidfile", str(self.pidfile), "--dir", str(self.workdir), "--save", "", "--appendonly", "no",
             "--logfile", str(self.workdir / f"redis-{self.port}.log")],
            check=True, timeout=10,
        )
        wait_for(self.alive, 10, what=f"redis on {self.port}")
        return self

    def stop(self) -> None:
        """Shut it down (nothing saved) and wait until it no longer answers."""
        if self.alive():
            self.cli("shutdown", "nosave")
        wait_for(lambda: self.cli("ping").returncode != 0, 10, what=f"redis on {self.port} to stop")

    def queued(self) -> int:
        """Messages waiting in the run queue, every priority list of it (kombu: 'celery', 'celery\\x06\\x16<n>')."""
        total = 0
        for key in ("celery", *(f"celery\x06\x16{p}" for p in (3, 6, 9))):
            out = self.cli("llen", key).stdout.strip()
            total += int(out) if out.isdigit() else 0
        return total

    def __enter__(self) -> "PrivateRedis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
