"""Who may see what: the permission decorator and fetch-and-check helpers.

Views never test roles or filter by user by hand; they name one permission
here, and a refusal is audited before the 403 is raised.
"""
from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404

from audit.record import record_event
from sync.actions.actor import actor_of
from sync.models import Conflict, DeadLetter

APP = "desk"


def audit_refusal(request, permission: str) -> None:
    match = request.resolver_match
    record_event(
        action="desk.refused",
        outcome="denied",
        actor=actor_of(request.user),
        detail={"permission": permission, "url_name": match.view_name if match else "", "method": request.method},
    )


def require(permission: str):
    """Anonymous -> login page; signed in without ``desk.<permission>`` -> audited 403."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not request.user.has_perm(f"{APP}.{permission}"):
                audit_refusal(request, permission)
                raise PermissionDenied(permission)
            return view(request, *args, **kwargs)

        wrapped.desk_permission = permission
        return wrapped

    return decorator


def can(user, permission: str) -> bool:
    return user.is_authenticated and user.has_perm(f"{APP}.{permission}")


def get_conflict_for_user(user, pk: int) -> Conflict:
    """Every conflict is visible to anyone with view_conflicts (no per-site partitioning yet)."""
    return get_object_or_404(
        Conflict.objects.select_related("record_link__site", "record_link__patient_link", "run"), pk=pk
    )


def get_dead_letter_for_user(user, pk: int) -> DeadLetter:
    return get_object_or_404(DeadLetter.objects.select_related("run__site", "closed_by"), pk=pk)
