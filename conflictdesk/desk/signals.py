"""Logins, failed logins and logouts go into the audit chain ("desk" partition)."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from audit.record import record_event

from .access import actor_of


@receiver(user_logged_in, dispatch_uid="desk_audit_login")
def audit_login(sender, request, user, **kwargs):
    record_event(action="desk.login", outcome="ok", actor=actor_of(user))


@receiver(user_logged_out, dispatch_uid="desk_audit_logout")
def audit_logout(sender, request, user, **kwargs):
    if user is not None:
        record_event(action="desk.logout", outcome="ok", actor=actor_of(user))


@receiver(user_login_failed, dispatch_uid="desk_audit_login_failed")
def audit_login_failed(sender, credentials, request=None, **kwargs):
    # Whoever typed the login is unknown: the actor is "anonymous", never the typed text
    # (anyone could write another person's name, or markup, into the trail). The account
    # aimed at is named by id when it exists; the password never reaches here.
    attempted = str(credentials.get("email") or credentials.get("username") or "").strip()
    target = get_user_model().objects.filter(email__iexact=attempted).values_list("pk", flat=True).first() \
        if attempted else None
    record_event(action="desk.login", outcome="failed", actor="anonymous", actor_kind="user",
                 detail={"user_id": target} if target else {})
