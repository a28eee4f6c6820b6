"""Whether each part of the installation answers now: the operator's first question on the health page.

Checked when the page asks, each with a short timeout, and kept for LIVENESS_SECONDS so a
room of people watching the page is no load on the servers:

- PostgreSQL: the page's own query; Redis: a PING to the broker;
- the central FHIR server and each site's CDR: the circuit breaker's probe
  (``sync.workflow.breaker``), and whether an incident is open for it;
- Celery workers: a broadcast ping (how many answered);
- beat: when it last made a sweep happen (every CONFLICTDESK_SWEEP_SECONDS);
- detection (the poll loop, or beat's polls): the newest poll of any site.
"""
from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Max
from django.utils import timezone

from sync.models import Cursor, Outage, Site
from sync.workflow import breaker
from sync.workflow.services import get_services
from sync.workflow.sweeper import LAST_SWEEP_KEY

LIVENESS_SECONDS = 10
CACHE_KEY = "conflictdesk:liveness"


@dataclass(frozen=True)
class Part:
    name: str
    up: bool | None  # None: cannot tell (e.g. never seen yet)
    detail: str

    @property
    def state(self) -> str:
        return {True: "up", False: "down", None: "unknown"}[self.up]


def parts() -> list[Part]:
    """Every part's liveness, at most LIVENESS_SECONDS old."""
    found = cache.get(CACHE_KEY)
    if found is None:
        found = check_all()
        cache.set(CACHE_KEY, found, LIVENESS_SECONDS)
    return found


def check_all(now=None) -> list[Part]:
    now = now or timezone.now()
    outages = {o.destination: o for o in Outage.objects.filter(recovered_at__isnull=True)}
    services = get_services()
    broker = _redis()
    found = [_postgres(), broker, _server(breaker.CENTRAL, "Central FHIR (HAPI)", services, outages, now)]
    found += [_server(f"site:{s.name}", f"EHRbase {s.display_name or s.name}", services, outages, now)
              for s in Site.objects.filter(enabled=True).order_by("name")]
    # Asking workers through a broker that is down only waits out Celery's reconnection attempts.
    workers = _workers() if broker.up else Part("Celery workers", None, "cannot ask: the broker is down")
    return found + [workers, _beat(now), _detection(now)]


def _postgres() -> Part:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return Part("PostgreSQL", True, "answers")


def _redis() -> Part:
    try:
        redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        return Part("Redis (broker)", False, type(exc).__name__)
    return Part("Redis (broker)", True, "answers")


def _server(destination: str, label: str, services, outages: dict, now) -> Part:
    try:
        up = breaker.answers(destination, services)
    except Exception as exc:  # the site is misconfigured (URL not allowed, no credentials): not reachable by us
        return Part(label, False, type(exc).__name__)
    outage = outages.get(destination)
    if outage is None:
        return Part(label, up, "answers" if up else "does not answer")
    since = int((now - outage.opened_at).total_seconds())
    waiting = "runs wait for it" if not up else "answers again; its runs continue at the next probe"
    return Part(label, up, f"incident open for {since} s ({outage.probes} probe(s) found it down): {waiting}")


def _workers() -> Part:
    try:
        replies = current_app.control.ping(timeout=1.0) or []
    except Exception as exc:  # the broker is down: the Redis row says so too
        return Part("Celery workers", False, type(exc).__name__)
    return Part("Celery workers", bool(replies), f"{len(replies)} answered a ping")


def _beat(now) -> Part:
    last = cache.get(LAST_SWEEP_KEY)
    if last is None:
        return Part("Celery beat", None, "no sweep seen yet")
    age = (now - last).total_seconds()
    return Part("Celery beat", age <= 3 * settings.CONFLICTDESK_SWEEP_SECONDS + 5, f"last sweep {age:.0f} s ago")


def _detection(now) -> Part:
    sites = Site.objects.filter(enabled=True)
    if not sites.exists():
        return Part("Detection (poll loop)", None, "no site to poll")
    newest = Cursor.objects.filter(source__startswith="site:").aggregate(at=Max("last_polled_at"))["at"]
    if newest is None:
        return Part("Detection (poll loop)", None, "no poll yet")
    slowest = max(s.poll_interval_seconds for s in sites)
    age = (now - newest).total_seconds()
    return Part("Detection (poll loop)", age <= 2 * slowest + 10, f"newest poll {age:.0f} s ago")
