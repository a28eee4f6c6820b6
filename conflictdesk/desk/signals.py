"""Logins, failed logins and logouts go into the audit chain ("desk" partition)."""
from __future__ import annotations

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
    # The attempted login names a member of staff (or a typo); the password never reaches here.
    attempted = str(credentials.get("email") or credentials.get("username") or "")[:200]
    record_event(action="desk.login", outcome="failed", actor=attempted or "anonymous", actor_kind="user")
