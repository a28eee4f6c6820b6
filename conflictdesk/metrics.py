"""/metrics for Prometheus: every figure computed from PostgreSQL (and Redis) at scrape time.

Why not in-process counters: runs execute in Celery worker processes
(prefork children, other containers) while Prometheus scrapes the web role,
so a histogram observed in a worker is invisible here unless every process
shares a PROMETHEUS_MULTIPROC_DIR on one host. The engine already writes
everything needed into append-only or durable rows, so a custom Collector
reads them instead: nothing to wire into the engine, correct with any
number of workers and web processes, and nothing resets on a restart.

- ``conflictdesk_sync_latency_seconds``: for each run that synced a change
  (ChangeEvent status ``synced``), source commit (``committed_at``) to the
  end of its write step (the last ``write`` RunAttempt that did not fail).
  One observation per run, labelled by site, direction and the record's
  primary FHIR resource type. Resolution runs (no source commit) and echoes
  (nothing written) are not observed.
- ``conflictdesk_runs_total{outcome}`` and ``conflictdesk_retries_total`` count
  RunAttempt rows, which are only ever appended, so both are monotonic even
  when a dead letter is re-driven (a SyncRun's own status is not).
- ``conflictdesk_audit_intact`` and ``conflictdesk_audit_verified_age_seconds``
  are the last scheduled audit verification (``audit.status``).
- ``conflictdesk_retry_start_lag_seconds``: how late each retry started after
  its due time (RunAttempt.start_lag_seconds, recorded when the attempt
  starts; append-only rows, so the histogram is monotonic). A retry never
  starts early; a lag is the worker's timer, a busy pool and the claim path.
- ``conflictdesk_poll_failures{site}``: consecutive failed polls of a site (0
  when it answers); while above 0 the site's polls back off.
- The gauges are current counts (open dead letters, open conflicts, backlog,
  cursor lag) and the broker's queue length.

Every figure is recomputed at most once per CONFLICTDESK_METRICS_CACHE_SECONDS
per process. Access: ``Authorization: Bearer $CONFLICTDESK_METRICS_TOKEN``;
with the variable unset the endpoint is open only when DEBUG.
"""
from __future__ import annotations

import hmac
import logging
import threading
import time

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from audit.status import last_verification
from sync.models import Site

log = logging.getLogger(__name__)

CENTRAL = "central"
# Commit-to-write: a poll interval (30 s by default) plus the run's own steps.
LATENCY_BUCKETS = (0.5, 1, 2.5, 5, 10, 15, 30, 45, 60, 90, 120, 300, 600, 1800, 3600)

# A site name: from the record key ("site:<name>:<uid>") for both directions;
# a centrally born record has "central:<Type>/<id>" and is written to the site of its target.
_SITE_SQL = """
    CASE WHEN r.record_key LIKE 'site:%' THEN split_part(r.record_key, ':', 2)
         ELSE COALESCE(s.name, (SELECT ts.name FROM sync_site ts
                                WHERE ts.id::text = r.checkpoint -> 'targets' -> 0 ->> 'site_id'), 'central') END
"""
_TYPE_SQL = """
    CASE WHEN r.direction = 'to_openehr' THEN split_part(e.source_object_id, '/', 1)
         ELSE COALESCE((SELECT l.fhir_resources -> 0 ->> 'type' FROM sync_recordlink l
                        WHERE l.site_id = r.site_id AND l.versioned_object_uid = e.source_object_id), '') END
"""
LATENCY_SQL = f"""
WITH lat AS (
    SELECT {_SITE_SQL} AS site, r.direction, {_TYPE_SQL} AS resource_type,
           GREATEST(0, EXTRACT(EPOCH FROM (w.written_at - e.committed_at)))::float8 AS seconds
    FROM sync_syncrun r
    JOIN sync_changeevent e ON e.id = r.change_event_id
    LEFT JOIN sync_site s ON s.id = r.site_id
    JOIN LATERAL (SELECT max(a.finished_at) AS written_at FROM sync_runattempt a
                  WHERE a.run_id = r.id AND a.step = 'write'
                    AND a.outcome NOT IN ('transient', 'stale', 'dead_letter')) w ON w.written_at IS NOT NULL
    WHERE r.status = 'done' AND e.status = 'synced' AND e.committed_at IS NOT NULL
)
SELECT site, direction, resource_type, count(*), sum(seconds),
       {", ".join(f"count(*) FILTER (WHERE seconds <= {b})" for b in LATENCY_BUCKETS)}
FROM lat GROUP BY site, direction, resource_type ORDER BY site, direction, resource_type
"""
# Attempts are append-only: each terminal transition leaves exactly one of these.
OUTCOMES_SQL = """
SELECT CASE
         WHEN step = 'acknowledge' AND outcome = 'ok' THEN 'succeeded'
         WHEN step = 'detect' AND outcome = 'echo' THEN 'echo'
         WHEN outcome = 'conflict' THEN 'conflict'
         WHEN outcome = 'dead_letter' OR (outcome = 'transient' AND scheduled_delay_seconds IS NULL)
           THEN 'dead_lettered'
       END AS outcome, count(*)
FROM sync_runattempt
WHERE (step = 'acknowledge' AND outcome = 'ok') OR (step = 'detect' AND outcome = 'echo')
   OR outcome IN ('conflict', 'dead_letter') OR (outcome = 'transient' AND scheduled_delay_seconds IS NULL)
GROUP BY 1
"""
RETRIES_SQL = "SELECT count(*) FROM sync_runattempt WHERE outcome = 'transient' AND scheduled_delay_seconds IS NOT NULL"
DEAD_LETTERS_SQL = """
SELECT COALESCE(s.name, 'central'), count(*) FROM sync_deadletter d
JOIN sync_syncrun r ON r.id = d.run_id LEFT JOIN sync_site s ON s.id = r.site_id
WHERE d.status = 'open' GROUP BY 1
"""
CONFLICTS_SQL = """
SELECT s.name, count(*) FROM sync_conflict c
JOIN sync_recordlink l ON l.id = c.record_link_id JOIN sync_site s ON s.id = l.site_id
WHERE c.status = 'open' GROUP BY 1
"""
BACKLOG_SQL = """
SELECT COALESCE(s.name, 'central'), count(*) FROM sync_changeevent e LEFT JOIN sync_site s ON s.id = e.site_id
WHERE e.status IN ('pending', 'running') GROUP BY 1
"""
CURSORS_SQL = "SELECT source, position FROM sync_cursor"
# How late retries started: a retry is due at next_attempt_at, never started before it.
START_LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
START_LAG_SQL = f"""
SELECT count(*), COALESCE(sum(start_lag_seconds), 0),
       {", ".join(f"count(*) FILTER (WHERE start_lag_seconds <= {b})" for b in START_LAG_BUCKETS)}
FROM sync_runattempt WHERE start_lag_seconds IS NOT NULL
"""
POLL_FAILURES_SQL = "SELECT split_part(source, ':', 2), poll_failures FROM sync_cursor WHERE source LIKE 'site:%'"


class SyncCollector:
    """Reads the figures from PostgreSQL; caches them briefly so several scrapers cost one read."""

    def __init__(self):
        self._lock = threading.Lock()
        self._cached: tuple[float, list] | None = None

    def collect(self):
        with self._lock:
            ttl = settings.CONFLICTDESK_METRICS_CACHE_SECONDS
            if self._cached is None or time.monotonic() - self._cached[0] >= ttl:
                self._cached = (time.monotonic(), self._families())
            families = self._cached[1]
        yield from families

    def describe(self):
        return []  # collected lazily: never touch the database at registration

    def _families(self) -> list:
        families = []
        with connection.cursor() as cursor:
            families.append(_latency(_rows(cursor, LATENCY_SQL)))
            runs = CounterMetricFamily("conflictdesk_runs", "Finished sync runs by outcome.", labels=["outcome"])
            counts = dict(_rows(cursor, OUTCOMES_SQL))
            for outcome in ("succeeded", "conflict", "dead_lettered", "echo"):
                runs.add_metric([outcome], counts.get(outcome, 0))
            families.append(runs)
            families.append(CounterMetricFamily("conflictdesk_retries", "Transient-fault retries scheduled.",
                                                value=_rows(cursor, RETRIES_SQL)[0][0]))
            families.append(_by_site("conflictdesk_dead_letters", "Open dead letters.", _rows(cursor, DEAD_LETTERS_SQL)))
            families.append(_by_site("conflictdesk_open_conflicts", "Conflicts waiting for a decision.",
                                     _rows(cursor, CONFLICTS_SQL)))
            families.append(_by_site("conflictdesk_backlog", "Change events detected, not yet finished.",
                                     _rows(cursor, BACKLOG_SQL)))
            families.append(_cursor_lag(_rows(cursor, CURSORS_SQL)))
            families.append(_start_lag(_rows(cursor, START_LAG_SQL)[0]))
            families.append(_by_site("conflictdesk_poll_failures", "Consecutive failed polls of the site (backing off).",
                                     _rows(cursor, POLL_FAILURES_SQL), central=False))
        families.extend(_audit_status())
        families.extend(_queue_depth())
        return families


def _rows(cursor, sql):
    cursor.execute(sql)
    return cursor.fetchall()


def _latency(rows) -> HistogramMetricFamily:
    family = HistogramMetricFamily("conflictdesk_sync_latency_seconds",
                                   "Source commit to destination write, per synced record.",
                                   labels=["site", "direction", "resource_type"])
    for site, direction, resource_type, count, total, *cumulative in rows:
        buckets = [(_le(b), n) for b, n in zip(LATENCY_BUCKETS, cumulative)] + [("+Inf", count)]
        family.add_metric([site, direction, resource_type], buckets, total or 0.0)
    return family


def _le(bound) -> str:
    return str(float(bound))


def _start_lag(row) -> HistogramMetricFamily:
    count, total, *cumulative = row
    family = HistogramMetricFamily("conflictdesk_retry_start_lag_seconds",
                                   "How late each retry started after its due time.")
    buckets = [(_le(b), n) for b, n in zip(START_LAG_BUCKETS, cumulative)] + [("+Inf", count)]
    family.add_metric([], buckets, total or 0.0)
    return family


def _by_site(name: str, documentation: str, rows, *, central: bool = True) -> GaugeMetricFamily:
    """Every site appears (0 when it has none), plus 'central' for central-born work."""
    family = GaugeMetricFamily(name, documentation, labels=["site"])
    counts = dict(rows)
    for site in _site_names() + ([CENTRAL] if central else []):
        family.add_metric([site], counts.pop(site, 0))
    for site, n in sorted(counts.items()):  # a deleted site's leftovers, if any
        family.add_metric([site], n)
    return family


def _site_names() -> list[str]:
    return list(Site.objects.order_by("name").values_list("name", flat=True))


def _cursor_lag(rows) -> GaugeMetricFamily:
    """Now minus each change feed's cursor; a source never read yet is left out (no position to age)."""
    family = GaugeMetricFamily("conflictdesk_cursor_lag_seconds", "Now minus the change feed's cursor.",
                               labels=["site"])
    now = timezone.now()
    for source, position in sorted(rows):
        if position is None:
            continue
        site = source.split(":", 1)[1] if source.startswith("site:") else source
        family.add_metric([site], max(0.0, (now - position).total_seconds()))
    return family


def _audit_status() -> list:
    """The scheduled audit verification's last result (audit.status); no sample before it first ran."""
    intact = GaugeMetricFamily("conflictdesk_audit_intact",
                               "1 when the last scheduled check found every chain and anchor intact.")
    age = GaugeMetricFamily("conflictdesk_audit_verified_age_seconds", "Now minus the last scheduled audit check.")
    last = last_verification()
    if last is not None:
        intact.add_metric([], 1 if last.intact else 0)
        age.add_metric([], max(0.0, (timezone.now() - last.at).total_seconds()))
    return [intact, age]


def _queue_depth() -> list:
    """LLEN of each Celery queue in Redis (kombu keeps priorities 3, 6, 9 in suffixed lists)."""
    depth = GaugeMetricFamily("conflictdesk_celery_queue_depth", "Messages waiting in the broker.")
    up = GaugeMetricFamily("conflictdesk_celery_broker_up", "1 when the broker answered the queue-depth read.")
    try:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2)
        keys = [k for q in settings.CONFLICTDESK_METRICS_QUEUES for k in (q, *(f"{q}\x06\x16{p}" for p in (3, 6, 9)))]
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.llen(key)
            total = sum(pipe.execute())
    except Exception as exc:  # a down broker is a figure, not an error page
        log.warning("metrics: broker queue depth unavailable (%s)", exc.__class__.__name__)
        up.add_metric([], 0)
        return [up]
    depth.add_metric([], total)
    up.add_metric([], 1)
    return [depth, up]


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(SyncCollector())


def allowed(request) -> bool:
    token = settings.CONFLICTDESK_METRICS_TOKEN
    if not token:
        return settings.DEBUG
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@never_cache
@require_GET
def metrics_view(request):
    if not allowed(request):
        response = HttpResponse("metrics need Authorization: Bearer <CONFLICTDESK_METRICS_TOKEN>\n", status=401,
                                content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
