"""The staff digest: new dead letters and new conflicts since the last digest, ids and causes only.

The engine already mails each dead letter as it happens; the digest is the
calm summary (one mail per interval, nothing when nothing is new) that also
covers conflicts. Bodies carry ids, sites, causes and desk links, never
clinical content.
"""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from sync.models import Conflict, DeadLetter

from .models import DigestMark


def send_digest(now=None) -> int:
    """Mail what is new since the last digest (or the last interval); return how many items it named."""
    now = now or timezone.now()
    with transaction.atomic():
        mark, _ = DigestMark.objects.select_for_update().get_or_create(
            name="staff", defaults={"sent_until": now - timedelta(minutes=settings.CONFLICTDESK_DIGEST_MINUTES)}
        )
        letters = list(DeadLetter.objects.select_related("run__site")
                       .filter(created_at__gte=mark.sent_until, created_at__lt=now).order_by("created_at"))
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
        lines.append("Dead letters:")
        lines += [f"  #{d.pk} {d.run.site.name if d.run.site else 'central'} {d.get_cause_display()} rule={d.rule or '-'} "
                  f"{base}{reverse('desk:deadletter', args=[d.pk])}" for d in letters]
    return "\n".join(lines) + "\n"
