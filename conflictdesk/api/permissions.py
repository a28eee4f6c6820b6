"""The desk's role table, enforced for the API: one DRF permission class, no second table.

A view names the permission each of its actions needs (``desk_permissions``,
keyed by ViewSet action or HTTP method); the codename is one of
``roles.PERMISSIONS`` and is checked with ``user.has_perm('desk.<codename>')``,
exactly as the desk's ``require()`` does. A tuple means "any of these". A
signed-in user without it gets a 403 that is audited like the desk's refusals.
"""
from __future__ import annotations

from knox.auth import TokenAuthentication
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import BasePermission

from conflictdesk.desk.access import APP, audit_refusal
from conflictdesk.desk.roles import PERMISSIONS


def needed(view, request) -> tuple[str, ...]:
    table = getattr(view, "desk_permissions", {})
    key = getattr(view, "action", None) or request.method.lower()
    perms = table.get(key) or table.get(request.method.lower()) or table.get("*")
    if perms is None:  # a view without an entry is a bug: refuse rather than open it
        raise LookupError(f"{view.__class__.__name__} names no desk permission for {key!r}")
    perms = (perms,) if isinstance(perms, str) else tuple(perms)
    unknown = [p for p in perms if p not in PERMISSIONS]
    if unknown:
        raise LookupError(f"unknown desk permission(s) {unknown}")
    return perms


class DeskRole(BasePermission):
    """Signed in, and a role granting the view's desk permission; refusals audited."""

    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False  # DRF answers 401/403 "not authenticated"; nobody to audit
        perms = needed(view, request)
        if any(request.user.has_perm(f"{APP}.{p}") for p in perms):
            return True
        audit_refusal(request, "|".join(perms))
        self.message = f"Your role does not allow this (needs desk permission {' or '.join(perms)})."
        return False


# Token first: an anonymous request then gets 401 with `WWW-Authenticate: Token`, which machines understand.
# knox's tokens: the row holds a digest and an expiry (sync.actions.people.do_issue_api_token).
AUTHENTICATION = [TokenAuthentication, SessionAuthentication]
