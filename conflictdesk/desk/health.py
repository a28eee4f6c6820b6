"""Per-site health figures for the dashboard, computed from the engine's rows in PostgreSQL.

Definitions (shown on the page too): *last poll* is the detection cursor's
last_polled_at; a site whose polls fail is *unreachable* (its failed polls in
a row, the error class, and when the next poll is tried: polls back off); *lag* is the age of the oldest change not yet finished
(0 when nothing waits); *backlog* counts changes pending or running, of which
*waiting for a destination* are runs parked while a server is down (breaker
open); *success rate* is done / (done + dead-lettered) for runs that finished
in the last 24 h (a conflict is the engine working as meant, not a failure);
*latency* is run creation to finish for runs done, over the last 15 minutes
and the last 24 h apart (a start-up backlog shows in the second, not the first).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from audit.status import last_verification
from sync.models import ChangeEvent, Conflict, Cursor, DeadLetter, Site, SyncRun

_UNFINISHED = [ChangeEvent.Status.PENDING, ChangeEvent.Status.RUNNING]
_ENDED = [SyncRun.Status.DONE, SyncRun.Status.DEAD_LETTER, SyncRun.Status.CONFLICT]


@dataclass
class SourceHealth:
    name: str
    label: str
    last_poll: object
    lag_seconds: float | None
    backlog: int
    success_rate: float | None
    p50: float | None
    p95: float | None
    dead_letters: int
    open_conflicts: int
    hourly: list = field(default_factory=list)  # 24 x (done, dead-lettered), oldest first
    p50_15m: float | None = None  # the same latency over the last 15 minutes
    p95_15m: float | None = None
    waiting_destination: int = 0  # runs parked while a server they need is down
    # The source's poll state (sites): failed polls in a row, the last one's error class, when the next is tried.
    poll_failures: int = 0
    poll_error: str = ""
    poll_retry_at: object = None
    deletions_checked_at: object = None

    @property
    def status(self) -> str:
        if self.poll_failures:
            return "unreachable"
        if self.last_poll is None or (timezone.now() - self.last_poll) > timedelta(minutes=10):
            return "stale"
        if self.dead_letters or (self.success_rate is not None and self.success_rate < 0.95):
            return "degraded"
        return "ok"


def dashboard(now=None) -> list[SourceHealth]:
    now = now or timezone.now()
    rows = [_for(f"site:{s.name}", s.display_name or s.name, now, events_q=Q(site=s),
                 runs_q=Q(site=s, direction="to_fhir"), letters_q=Q(run__site=s), conflicts_q=Q(record_link__site=s))
            for s in Site.objects.order_by("name")]
    central = Q(direction="to_openehr")
    rows.append(_for("central", "Central FHIR", now, events_q=Q(source="central"), runs_q=central,
                     letters_q=Q(run__direction="to_openehr"), conflicts_q=Q(run__direction="to_openehr")))
    return rows


def _for(source, label, now, *, events_q, runs_q, letters_q, conflicts_q) -> SourceHealth:
    cursor = Cursor.objects.filter(source=source).first()
    waiting = ChangeEvent.objects.filter(events_q, status__in=_UNFINISHED)
    oldest = waiting.order_by("detected_at").values_list("detected_at", flat=True).first()
    since = now - timedelta(hours=24)
    ended = list(SyncRun.objects.filter(runs_q, status__in=_ENDED, finished_at__gte=since)
                 .values_list("status", "created_at", "finished_at"))
    done = [(f - c).total_seconds() for s, c, f in ended if s == SyncRun.Status.DONE]
    recent = [(f - c).total_seconds() for s, c, f in ended
              if s == SyncRun.Status.DONE and f >= now - timedelta(minutes=15)]
    failed = sum(1 for s, _, _ in ended if s == SyncRun.Status.DEAD_LETTER)
    return SourceHealth(
        name=source, label=label, last_poll=cursor.last_polled_at if cursor else None,
        lag_seconds=(now - oldest).total_seconds() if oldest else 0.0, backlog=waiting.count(),
        success_rate=(len(done) / (len(done) + failed)) if done or failed else None,
        p50=percentile(done, 50), p95=percentile(done, 95),
        p50_15m=percentile(recent, 50), p95_15m=percentile(recent, 95),
        waiting_destination=SyncRun.objects.filter(runs_q, status=SyncRun.Status.DESTINATION_DOWN).count(),
        dead_letters=DeadLetter.objects.filter(letters_q, status=DeadLetter.Status.OPEN).count(),
        open_conflicts=Conflict.objects.filter(conflicts_q, status=Conflict.Status.OPEN).count(),
        hourly=_hourly(ended, now),
        poll_failures=cursor.poll_failures if cursor else 0, poll_error=cursor.poll_error if cursor else "",
        poll_retry_at=cursor.poll_retry_at if cursor else None,
        deletions_checked_at=cursor.deletions_checked_at if cursor else None,
    )


def percentile(values: list[float], pct: int) -> float | None:
    """Nearest-rank percentile; None for no data (shown as a dash, not a zero)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-pct * len(ordered) // 100))
    return ordered[rank - 1]


def _hourly(ended, now) -> list[tuple[int, int]]:
    """Runs done and dead-lettered per hour (conflicts are neither)."""
    buckets = [[0, 0] for _ in range(24)]
    for status, _, finished in ended:
        hour = 23 - int((now - finished).total_seconds() // 3600)
        if 0 <= hour < 24 and status != SyncRun.Status.CONFLICT:
            buckets[hour][0 if status == SyncRun.Status.DONE else 1] += 1
    return [tuple(b) for b in buckets]


def sparkline(hourly: list[tuple[int, int]], width: int = 192, height: int = 36) -> dict:
    """Bar geometry for the inline SVG: successes up, failures in a contrasting colour on top."""
    peak = max([d + f for d, f in hourly] + [1])
    bar = width / max(len(hourly), 1)
    bars = []
    for i, (done, failed) in enumerate(hourly):
        h_done, h_failed = height * done / peak, height * failed / peak
        bars.append({"x": round(i * bar, 1), "w": round(bar - 1, 1),
                     "y_done": round(height - h_done, 1), "h_done": round(h_done, 1),
                     "y_failed": round(height - h_done - h_failed, 1), "h_failed": round(h_failed, 1)})
    return {"width": width, "height": height, "bars": bars, "peak": peak}


def audit_status():
    """The last scheduled audit verification (``audit.status``), or None if it never ran."""
    return last_verification()
