"""A circuit breaker per destination: an outage makes runs wait instead of burning their retries.

A run needs two servers: its site's CDR and the central FHIR server. When a step
fails as transient, the runner asks both whether they answer now (``after_transient``,
a cheap read with a short timeout). One that does not opens an incident (an open
``Outage`` row is the breaker open): the run waits in ``destination_down`` with its
attempt count started afresh, and every run that needs that server waits at its
claim instead of trying (``down_for``). Beat's ``sync.probe_destinations`` re-checks
each open incident on the retry schedule (1, 2, 4 .. 32 s) and then every
CONFLICTDESK_PROBE_EVERY_SECONDS; when the server answers, the incident closes and
the waiting runs are sent again, oldest first.

A run that fails while both its servers answer is on its own: it keeps the exact
7-attempt schedule and dead-letters. Staff get one mail when an incident opens and
one when it closes, never one per run.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from sync.clients.errors import ClientError, TransientError
from sync.models import Outage, Site, SyncRun

from .dispatch import dispatch_run
from .services import Services, get_services

log = logging.getLogger(__name__)

CENTRAL = "central"


def destinations(run: SyncRun) -> list[str]:
    """The servers a run reads or writes: its site's CDR (when it has a site) and central."""
    return [f"site:{run.site.name}", CENTRAL] if run.site_id else [CENTRAL]


def open_destinations() -> set[str]:
    return set(Outage.objects.filter(recovered_at__isnull=True).values_list("destination", flat=True))


def down_for(run: SyncRun) -> str | None:
    """The first of the run's servers whose breaker is open, or None."""
    return (Outage.objects.filter(destination__in=destinations(run), recovered_at__isnull=True)
            .values_list("destination", flat=True).first())


def after_transient(run: SyncRun, exc: Exception, services: Services | None = None) -> str | None:
    """After a run's transient failure: the server it needs that is down (breaker open, or opened now), or None.

    Called outside any transaction: a probe may take its whole timeout.
    """
    services = services or get_services()
    down = down_for(run)
    if down:
        return down
    for destination in destinations(run):
        if not answers(destination, services):
            open_incident(destination, type(exc).__name__)
            return destination
    return None


def answers(destination: str, services: Services) -> bool:
    """Whether the server answers at all: a refusal (4xx) is an answer, a transport error or 5xx is not."""
    timeout = float(settings.CONFLICTDESK_PROBE_TIMEOUT_SECONDS)
    try:
        if destination == CENTRAL:
            services.fhir.ping(timeout=timeout)
        else:
            services.openehr(Site.objects.get(name=destination.removeprefix("site:"))).ping(timeout=timeout)
    except TransientError:
        return False
    except ClientError:
        return True
    return True


def probe_delay(probes: int) -> float:
    """Seconds to the next probe after ``probes`` failed ones: the retry schedule, then a steady interval."""
    delays = settings.CONFLICTDESK_RETRY_DELAYS
    return float(delays[probes]) if probes < len(delays) else float(settings.CONFLICTDESK_PROBE_EVERY_SECONDS)


def open_incident(destination: str, error_class: str) -> bool:
    """Open the destination's breaker; False if another worker opened it first (one incident, one mail)."""
    try:
        with transaction.atomic():
            outage = Outage.objects.create(destination=destination, error_class=error_class,
                                           next_probe_at=timezone.now() + timedelta(seconds=probe_delay(0)))
            transaction.on_commit(lambda: _mail(f"{destination} is down: runs wait for it", _opened_body(outage)))
    except IntegrityError:
        return False
    log.warning("destination %s down (%s): breaker open, runs wait", destination, error_class)
    return True


def probe_due(services: Services | None = None, now=None) -> int:
    """Probe every open incident whose time has come; return how many closed."""
    now = now or timezone.now()
    due = Outage.objects.filter(recovered_at__isnull=True, next_probe_at__lte=now).values_list("pk", flat=True)
    return sum(probe(pk, services or get_services(), now) for pk in list(due))


def probe(outage_id: int, services: Services, now) -> bool:
    """One probe of one incident (a second beat tick skips it while it runs); True if it closed."""
    with transaction.atomic():
        outage = (Outage.objects.select_for_update(skip_locked=True)
                  .filter(pk=outage_id, recovered_at__isnull=True, next_probe_at__lte=now).first())
        if outage is None:
            return False
        if not answers(outage.destination, services):
            outage.probes += 1
            outage.next_probe_at = timezone.now() + timedelta(seconds=probe_delay(outage.probes))
            outage.save(update_fields=["probes", "next_probe_at"])
            log.warning("destination %s still down after %s probe(s); next at %s", outage.destination,
                        outage.probes, outage.next_probe_at.isoformat(timespec="seconds"))
            return False
        outage.recovered_at = timezone.now()
        outage.save(update_fields=["recovered_at"])
        resumed = resume_waiting()
        transaction.on_commit(lambda: _mail(f"{outage.destination} is back: {resumed} waiting run(s) continue",
                                            _recovered_body(outage, resumed)))
    log.warning("destination %s answers again: breaker closed, %s run(s) resumed", outage.destination, resumed)
    return True


def resume_waiting() -> int:
    """Send every run waiting for a destination that is no longer down, oldest first."""
    down = open_destinations()
    if CENTRAL in down:
        return 0
    sites = [d.removeprefix("site:") for d in down]
    ids = list(SyncRun.objects.filter(status=SyncRun.Status.DESTINATION_DOWN)
               .exclude(Q(site__name__in=sites)).order_by("pk").values_list("pk", flat=True))
    for run_id in ids:
        dispatch_run(run_id)
    return len(ids)


def _opened_body(outage: Outage) -> str:
    return (f"{outage.destination} stopped answering at {outage.opened_at:%Y-%m-%d %H:%M:%S} UTC "
            f"({outage.error_class}).\n\nRuns that need it wait (state 'waiting: destination down') instead of "
            "using up their retries; nothing is dead-lettered for the outage. The engine re-checks it on the "
            "retry schedule, then every minute, and mails again when it answers.\n\n"
            f"Health: {settings.CONFLICTDESK_BASE_URL.rstrip('/')}{reverse('desk:health')}\n")


def _recovered_body(outage: Outage, resumed: int) -> str:
    down_for_seconds = (outage.recovered_at - outage.opened_at).total_seconds()
    return (f"{outage.destination} answers again at {outage.recovered_at:%Y-%m-%d %H:%M:%S} UTC after "
            f"{down_for_seconds:.0f} s ({outage.probes} probe(s) found it down).\n\n"
            f"{resumed} waiting run(s) continue, oldest first.\n")


def _mail(subject: str, body: str) -> None:
    if settings.CONFLICTDESK_STAFF_EMAILS:
        send_mail(f"[ConflictDesk] {subject}", body, settings.DEFAULT_FROM_EMAIL,
                  settings.CONFLICTDESK_STAFF_EMAILS, fail_silently=True)
