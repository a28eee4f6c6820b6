"""What the proxy should do next (the plan) and what it did (the record).

A plan is an ordered list of rules. Each rule is consulted at one moment of a
connection's life: when it is accepted (``accept``), or when a request has been
read (``request``; a ``response`` drop is chosen then and carried out once the
server has answered). Delays add up; the first fault that strikes wins. A rule
strikes on every consultation, or with probability ``fraction`` drawn from its
own ``random.Random(seed)``, so a run is repeatable; it retires after ``count``
strikes or ``seconds`` after it was added.

Everything here is guarded by one lock: the plan is changed from test threads
and the control endpoint while the proxy's event loop reads it.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

# Where each kind of rule may act.
PHASES = {
    "delay": ("accept", "request"),
    "fail": ("request",),
    "drop": ("accept", "request", "response"),
    "hang": ("accept", "request"),
}
# Enough for a long soak run; the oldest entries go first.
MAX_RECORDS = 100_000


@dataclass
class Rule:
    kind: str
    at: str
    count: int | None = 1
    fraction: float | None = None
    seed: int = 0
    seconds: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    hits: int = 0
    added: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.at not in PHASES.get(self.kind, ()):
            raise ValueError(f"a {self.kind!r} rule cannot act at {self.at!r}")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be positive (or None for no limit)")
        if self.fraction is not None and not 0.0 <= self.fraction <= 1.0:
            raise ValueError("fraction must be within [0, 1]")
        self._rng = random.Random(self.seed)

    def live(self, now: float) -> bool:
        spent = self.count is not None and self.hits >= self.count
        expired = self.seconds is not None and now - self.added >= self.seconds
        return not (spent or expired)

    def strikes(self) -> bool:
        if self.fraction is not None and self._rng.random() >= self.fraction:
            return False
        self.hits += 1
        return True

    def describe(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("kind", "at", "count", "fraction", "seed", "seconds", "params", "hits")}


@dataclass(frozen=True)
class Decision:
    """What to do with one connection or request: wait ``delay_ms``, then ``fault`` (None: pass)."""

    delay_ms: float = 0.0
    fault: Rule | None = None


@dataclass(frozen=True)
class Event:
    """One injected fault (or a state change such as ``down``/``up``).

    ``monotonic`` is ``time.monotonic()`` in the proxy's process, for
    intervals; ``wall`` is ``time.time()`` for lining up with other logs.
    """

    seq: int
    kind: str
    at: str
    monotonic: float
    wall: float
    connection: int | None = None
    request: int | None = None
    method: str | None = None
    path: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Seen:
    """One request the proxy read, and what became of it (``passed``, a fault kind, ``upstream_error``)."""

    seq: int
    connection: int
    monotonic: float
    method: str
    path: str
    outcome: str
    status: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Plan:
    """The rules in force plus the record of what they did."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._events: deque[Event] = deque(maxlen=MAX_RECORDS)
        self._seen: deque[Seen] = deque(maxlen=MAX_RECORDS)
        self._seq = 0
        self._changed = threading.Condition(self._lock)

    # --- the plan ---------------------------------------------------------

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self, kind: str | None = None) -> None:
        with self._lock:
            self._rules = [r for r in self._rules if kind is not None and r.kind != kind]

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            now = time.monotonic()
            return [r.describe() for r in self._rules if r.live(now)]

    def decide(self, phase: str) -> Decision:
        """Consult the live rules for ``phase`` (``accept`` or ``request``)."""
        with self._lock:
            now = time.monotonic()
            self._rules = [r for r in self._rules if r.live(now)]
            delay, fault = 0.0, None
            for rule in self._rules:
                acts_now = rule.at == phase or (phase == "request" and rule.at == "response")
                if not acts_now or not rule.strikes():
                    continue
                if rule.kind == "delay":
                    delay += rule.params["ms"]
                else:
                    fault = rule
                    break
            return Decision(delay, fault)

    # --- the record -------------------------------------------------------

    def record(self, kind: str, at: str, **info: Any) -> Event:
        with self._lock:
            self._seq += 1
            event = Event(self._seq, kind, at, time.monotonic(), time.time(), **info)
            self._events.append(event)
            self._changed.notify_all()
            return event

    def saw(self, connection: int, method: str, target: str, outcome: str, status: int | None = None) -> Seen:
        with self._lock:
            self._seq += 1
            seen = Seen(self._seq, connection, time.monotonic(), method, safe_target(target), outcome, status)
            self._seen.append(seen)
            self._changed.notify_all()
            return seen

    def events(self, kind: str | None = None) -> list[Event]:
        with self._lock:
            return [e for e in self._events if kind is None or e.kind == kind]

    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def forget(self) -> None:
        with self._lock:
            self._events.clear()
            self._seen.clear()

    def wait(self, predicate, timeout: float) -> bool:
        """Block until ``predicate(plan)`` holds (re-checked on every new record) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:  # bounded by the deadline
            if predicate(self):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with self._changed:
                self._changed.wait(min(left, 0.5))


def safe_target(target: str) -> str:
    """The request path with query values masked; names stay, values may be patient data."""
    parts = urlsplit(target)
    if not parts.query:
        return parts.path or target
    names = dict.fromkeys(p.split("=", 1)[0] for p in parts.query.split("&") if p)
    return parts.path + "?" + "&".join(f"{n}=..." for n in names)


def intervals(events: list[Event]) -> list[float]:
    """Seconds between successive events, e.g. to compare with a 1, 2, 4, 8 s retry schedule."""
    return [b.monotonic - a.monotonic for a, b in zip(events, events[1:])]
