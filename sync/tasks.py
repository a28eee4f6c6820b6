"""Thin Celery shells: ids in, load fresh state, one call, one log line (ids only).

Retries are not Celery's: the runner records each attempt and schedules the
next with an exact countdown, so no task here uses autoretry. Nothing in the
engine imports this module: the workflow and the actions send tasks by name.
"""
from __future__ import annotations

import logging
import os
import socket

from celery import shared_task
from django.conf import settings

from sync import detection
from sync.models import Site
from sync.patients import backfill
from sync.patients.refresh import refresh_sites
from sync.workflow import breaker, sweeper
from sync.workflow.runner import advance
from sync.workflow.services import get_services

log = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@shared_task(name="sync.run_sync", ignore_result=True)
def run_sync(run_id: int) -> str:
    status = advance(run_id, worker_id())
    log.info("run %s -> %s", run_id, status)
    return status


@shared_task(name="sync.poll_site", ignore_result=True)
def poll_site(site_id: int) -> None:
    """Single flight, backs off when the site does not answer (``detection.run_site_poll``)."""
    site = Site.objects.filter(pk=site_id, enabled=True).first()
    if site is not None:
        detection.run_site_poll(site)


@shared_task(name="sync.check_deletions", ignore_result=True)
def check_deletions() -> int:
    """The slow deletion check of every enabled site and the central removal check (beat, every
    CONFLICTDESK_DELETION_CHECK_SECONDS)."""
    found = 0
    for site in Site.objects.filter(enabled=True):
        try:
            found += detection.check_deletions(site)
        except Exception as exc:  # a site that does not answer is checked at the next pass
            log.warning("deletion check of site %s failed: %s", site.pk, type(exc).__name__)
    try:  # and the centre's removals of the types whose edits do not flow back (issue 20)
        found += detection.poll_central_removals()
    except Exception as exc:  # the central server not answering: read from the same cursor next pass
        log.warning("central removal check failed: %s", type(exc).__name__)
    return found


# A pass reads every registration of every demographics site: it may take up to its interval, not
# the few minutes a run's step gets (the next tick finds it running and does nothing).
@shared_task(name="sync.refresh_demographics", ignore_result=True,
             soft_time_limit=settings.CONFLICTDESK_DEMOGRAPHICS_SECONDS,
             time_limit=settings.CONFLICTDESK_DEMOGRAPHICS_SECONDS + 60)
def refresh_demographics() -> int | None:
    """Demographics that moved without a new composition (beat, every CONFLICTDESK_DEMOGRAPHICS_SECONDS);
    single flight: None when another pass is running. Counts only in the log line."""
    passed = refresh_sites(get_services())
    if passed is None:
        return None
    written = sum(result.written for result in passed.values())
    log.info("demographics pass: %s site(s), %s registration(s) written", len(passed), written)
    return written


@shared_task(name="sync.backfill_links", ignore_result=True)
def backfill_links() -> int | None:
    """Registrations MDM linked to a golden record late get its existing records (beat, every
    CONFLICTDESK_BACKFILL_SECONDS); single flight: None when another sweep is running."""
    started = backfill.sweep(get_services().fhir)
    if started:
        log.info("backfill sweep: %s run(s) started", started)
    return started


@shared_task(name="sync.poll_central", ignore_result=True)
def poll_central() -> int:
    return detection.poll_central()


@shared_task(name="sync.poll_due", ignore_result=True)
def poll_due() -> int:
    """Poll every enabled site whose own interval has passed, is not backing off and has no poll
    queued or running (beat ticks every second; polls go to their own queue)."""
    due = detection.sites_to_poll()
    for site_id in due:
        try:
            poll_site.delay(site_id)
        except Exception:  # the broker is down: un-mark the site, the next tick tries again
            detection.poll_not_sent(site_id)
            log.warning("poll of site %s could not be sent", site_id)
    return len(due)


@shared_task(name="sync.detect_compositions", ignore_result=True)
def detect_compositions(site_id: int, ehr_id: str, vo_uids: list[str] | None) -> int:
    """A manual trigger's detection pass: one composition, or every composition of one EHR."""
    created = detection.detect_compositions(Site.objects.get(pk=site_id, enabled=True), ehr_id, vo_uids)
    log.info("trigger site %s: %s new run(s)", site_id, created)
    return created


@shared_task(name="sync.sweep", ignore_result=True)
def sweep() -> int:
    return sweeper.sweep()


@shared_task(name="sync.probe_destinations", ignore_result=True)
def probe_destinations() -> int:
    """Re-check each destination whose breaker is open, when its probe is due (beat, every second)."""
    return breaker.probe_due()
