"""The desk's state changes: a decision on a conflict, work on a dead letter, an invitation.

Each runs in one transaction with its audit event (the event commits or
rolls back with the change it describes). Free text a person typed (a reason)
stays on its row; the audit chain carries its hash, never the text, because
a reason may quote clinical content.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from audit.chain import payload_hash, sha256_hex
from audit.record import record_event
from sync.models import Conflict, DeadLetter, Resolution

from . import diff, engine
from .access import actor_of


class DecisionRefused(Exception):
    """The decision cannot be applied as asked (bad choices, conflict closed, servers unreachable)."""


class VersionsMoved(DecisionRefused):
    """A side changed after the page was rendered; ``current`` is the conflict to show now."""

    def __init__(self, message: str, current: Conflict):
        super().__init__(message)
        self.current = current


@dataclass
class Decision:
    resolution: Resolution
    run: object | None  # the engine's SyncRun, None while the engine lacks start_resolution_run


def decide_conflict(conflict: Conflict, *, user, choice: str, reason: str, field_choices: dict[str, str],
                    seen: dict) -> Decision:
    """Store, audit and hand to the engine a clinician's decision, unless either side moved since ``seen``."""
    if not reason.strip():
        raise DecisionRefused("a reason is required")
    comparison = diff.compare(conflict)
    content, choices = _content_for(conflict, comparison, choice, field_choices)
    try:
        live = engine.current_versions(conflict)  # network reads: before any row lock
    except Exception as exc:  # unreachable server: refuse, never guess
        raise DecisionRefused(f"could not read the current versions ({exc.__class__.__name__}); try again") from exc
    with transaction.atomic():
        locked = Conflict.objects.select_for_update().get(pk=conflict.pk)
        if locked.status != Conflict.Status.OPEN:
            raise VersionsMoved(f"this conflict is {locked.get_status_display()}", latest_conflict(locked))
        if seen != engine.versions_seen(locked) or live != seen:
            raise VersionsMoved("the record changed on a server while you were looking", latest_conflict(locked))
        resolution = Resolution.objects.create(
            conflict=locked, choice=choice, field_choices=choices, reason=reason.strip(), content=content,
            decided_by=user,
        )
        Conflict.objects.filter(pk=locked.pk).update(status=Conflict.Status.RESOLVED, closed_at=timezone.now())
        run = engine.start_resolution_run(resolution)
        record_event(
            action="desk.conflict.decide", outcome="ok", actor=actor_of(user),
            record_key=locked.run.record_key, run_id=run.pk,
            patient_link_id=locked.record_link.patient_link_id,
            detail={"conflict_id": locked.pk, "resolution_id": resolution.pk, "choice": choice,
                    "fields": len(comparison.fields), "from_site": sum(1 for v in choices.values() if v == diff.SITE),
                    "reason_sha256": sha256_hex(reason.strip()), "content_hash": content["record_hash"],
                    "openehr_version": seen["openehr"], "fhir_versions": sorted(f"{k}@{v}" for k, v in seen["fhir"].items())},
        )
    return Decision(resolution, run)


def latest_conflict(conflict: Conflict) -> Conflict:
    """The newest conflict on the same record (the one that superseded this one, or itself)."""
    return Conflict.objects.filter(record_link_id=conflict.record_link_id).order_by("-opened_at", "-pk").first()


def _content_for(conflict, comparison, choice, field_choices) -> tuple[dict, dict]:
    if choice == Resolution.Choice.KEEP_SITE:
        resources, choices = comparison.site_resources, {f.id: diff.SITE for f in comparison.fields}
    elif choice == Resolution.Choice.KEEP_CENTRAL:
        resources, choices = comparison.central_resources, {f.id: diff.CENTRAL for f in comparison.fields}
    elif choice == Resolution.Choice.MERGE:
        choices = {f.id: field_choices.get(f.id) for f in comparison.fields}
        missing = [fid for fid, side in choices.items() if side not in (diff.SITE, diff.CENTRAL)]
        if missing:
            raise DecisionRefused(f"choose a side for every differing field ({len(missing)} left)")
        resources = diff.merged_resources(comparison, choices)
    else:
        raise DecisionRefused(f"unknown choice {choice!r}")
    record = diff.record_content(resources)
    content = {
        "resources": resources,
        "record": record,
        "record_hash": payload_hash(record),
        # The versions the clinician decided on: the engine writes with If-Match on exactly these.
        "expected": engine.versions_seen(conflict),
    }
    if choice == Resolution.Choice.KEEP_SITE:
        content["openehr_composition"] = conflict.openehr_composition
    return content, choices


# --- dead letters ------------------------------------------------------------

def redrive_dead_letter(letter: DeadLetter, *, user):
    """Back into the workflow after a fix; the engine audits the re-drive with the user as actor."""
    with transaction.atomic():
        run = engine.redrive_dead_letter(letter, actor=actor_of(user))
        DeadLetter.objects.filter(pk=letter.pk).update(closed_by=user)
    return run


def discard_dead_letter(letter: DeadLetter, *, user, reason: str) -> DeadLetter:
    """Close a dead letter for good; the run stays dead-lettered, so reconcile still accounts for it."""
    if not reason.strip():
        raise ValueError("a reason is required")
    with transaction.atomic():
        letter = DeadLetter.objects.select_for_update().select_related("run").get(pk=letter.pk)
        if letter.status != DeadLetter.Status.OPEN:
            raise ValueError(f"dead letter {letter.pk} is {letter.status}, not open")
        letter.status, letter.closed_at, letter.closed_by = DeadLetter.Status.DISCARDED, timezone.now(), user
        letter.close_reason = reason.strip()
        letter.save(update_fields=["status", "closed_at", "closed_by", "close_reason"])
        record_event(
            action="desk.deadletter.discard", outcome="ok", actor=actor_of(user),
            record_key=letter.run.record_key, run_id=letter.run_id,
            detail={"dead_letter_id": letter.pk, "cause": letter.cause, "reason_sha256": sha256_hex(reason.strip())},
        )
    return letter


# --- people ------------------------------------------------------------------

def invite_user(email: str, role: str, *, invited_by: str, demo: bool = False):
    """Create (or re-invite) an account in ``role`` and e-mail a set-password link; returns (user, link)."""
    from allauth.account.forms import default_token_generator
    from allauth.account.models import EmailAddress
    from allauth.account.utils import user_pk_to_url_str
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from .roles import ADMIN, DEMO, role_of

    role = role_of(role)
    email = email.strip().lower()
    User = get_user_model()
    with transaction.atomic():
        user, created = User.objects.get_or_create(username=email, defaults={"email": email})
        if created:
            user.set_unusable_password()
        user.is_staff = user.is_staff or role == ADMIN  # the admin role also uses Django's admin for sites
        user.save()
        EmailAddress.objects.update_or_create(user=user, email=email, defaults={"primary": True, "verified": True})
        user.groups.add(Group.objects.get(name=role))
        if demo:
            user.groups.add(Group.objects.get(name=DEMO))
        path = reverse("account_reset_password_from_key",
                       kwargs={"uidb36": user_pk_to_url_str(user), "key": default_token_generator.make_token(user)})
        link = settings.CONFLICTDESK_BASE_URL.rstrip("/") + path
        record_event(action="desk.invite", outcome="ok", actor=invited_by,
                     detail={"user_id": user.pk, "role": role, "demo": demo, "new": created})
    send_mail(
        "[ConflictDesk] your account",
        f"You have been invited to ConflictDesk as {role}.\n\nSet your password here (the link works once):\n{link}\n\n"
        "After that you will be asked to set up an authenticator app (TOTP).\n",
        settings.DEFAULT_FROM_EMAIL, [email],
    )
    return user, link
