"""The staff digest: new dead letters and new conflicts since the last digest, ids and causes only.

The one mail staff get about dead letters (the engine mails none itself): one
per interval (Celery beat, ``desk.send_digest``), nothing when nothing is new,
so an outage that dead-letters 26 runs is one mail that counts them by site
and cause. Bodies carry ids, sites, causes, rules and desk links, never
record keys or clinical content.
"""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from sync.models import Conflict, DeadLetter

from .models import DigestMark

MAX_LISTED = 50  # one line each; the counts above always cover every letter


def send_digest(now=None) -> int:
    """Mail what is new since the last digest (or the last interval); return how many items it named."""
    now = now or timezone.now()
    with transaction.atomic():
        mark, _ = DigestMark.objects.select_for_update().get_or_create(
            name="staff", defaults={"sent_until": now - timedelta(minutes=settings.CONFLICTDESK_DIGEST_MINUTES)}
        )
        # New letters, and letters reopened (a re-driven run that dead-lettered again) since the last digest.
        reopened = Q(status=DeadLetter.Status.OPEN, run__finished_at__gte=mark.sent_until, run__finished_at__lt=now)
        letters = list(DeadLetter.objects.select_related("run__site")
                       .filter(Q(created_at__gte=mark.sent_until, created_at__lt=now) | reopened)
                       .order_by("created_at", "pk"))
        conflicts = list(Conflict.objects.select_related("record_link__site")
                         .filter(opened_at__gte=mark.sent_until, opened_at__lt=now).order_by("opened_at"))
        if (letters or conflicts) and settings.CONFLICTDESK_STAFF_EMAILS:
            send_mail(subject(letters, conflicts), body(letters, conflicts, mark.sent_until, now),
                      settings.DEFAULT_FROM_EMAIL, settings.CONFLICTDESK_STAFF_EMAILS)
        mark.sent_until = now
        mark.save(update_fields=["sent_until"])
    return len(letters) + len(conflicts)


def subject(letters, conflicts) -> str:
    return f"[ConflictDesk] {len(conflicts)} new conflict(s), {len(letters)} new dead letter(s)"


def body(letters, conflicts, since, until) -> str:
    base = settings.CONFLICTDESK_BASE_URL.rstrip("/")
    lines = [f"New since {since:%Y-%m-%d %H:%M} UTC (until {until:%H:%M}).", ""]
    if conflicts:
        lines.append("Conflicts waiting for a clinician:")
        lines += [f"  #{c.pk} {c.record_link.site.name} {c.resource_type or 'record'} ({c.get_kind_display()}) "
                  f"{base}{reverse('desk:conflict', args=[c.pk])}" for c in conflicts]
        lines.append("")
    if letters:
        lines.append("Dead letters, by site and cause:")
        by_group = Counter((_site(d), d.get_cause_display()) for d in letters)
        lines += [f"  {n} x {site}: {cause}" for (site, cause), n in sorted(by_group.items())]
        lines += ["", f"Work them in the desk (bulk re-drive by site, rule and time): {base}{reverse('desk:deadletters')}"]
        lines += [f"  #{d.pk} {_site(d)} {d.get_cause_display()} rule={d.rule or '-'} "
                  f"{base}{reverse('desk:deadletter', args=[d.pk])}" for d in letters[:MAX_LISTED]]
        if len(letters) > MAX_LISTED:
            lines.append(f"  ... and {len(letters) - MAX_LISTED} more")
    return "\n".join(lines) + "\n"


def _site(letter) -> str:
    return letter.run.site.name if letter.run.site else "central"
