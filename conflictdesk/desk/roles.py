"""Roles are groups; what a role may do is a permission on ``desk.DeskAccess``.

This table is the one place that says who may do what: the data migration
builds the groups from it and the role-walk test checks every URL against it.
"""
from __future__ import annotations

from django.conf import settings

CLINICIAN = "clinician reviewer"
STEWARD = "data steward"
AUDITOR = "auditor"
ADMIN = "admin"
# Not a role: a flag. Demo accounts may skip TOTP enrolment (see middleware).
DEMO = "demo"

# codename -> human description (the Meta.permissions of DeskAccess)
PERMISSIONS = {
    "view_conflicts": "See the conflict queue and conflict details",
    "decide_conflict": "Decide conflicts (keep site / keep central / merge)",
    "view_deadletters": "See dead letters",
    "work_deadletters": "Re-drive and discard dead letters",
    "view_audit": "Browse the audit trail and verify its chains",
    "view_health": "See the health dashboard",
    "manage_sites": "Manage sites",
    "manage_users": "Invite users and assign roles",
    "match_patients": "Confirm or reject possible patient matches (MDM) and merge golden records",
}

# The auditor reads everything and changes nothing.
ROLE_PERMISSIONS = {
    CLINICIAN: {"view_conflicts", "decide_conflict", "view_health"},
    STEWARD: {"view_conflicts", "view_deadletters", "work_deadletters", "view_health", "match_patients"},
    AUDITOR: {"view_conflicts", "view_deadletters", "view_audit", "view_health"},
    ADMIN: {"manage_sites", "manage_users", "view_health"},
}

# Short names for the command line (invite_user email <role>).
ROLE_ALIASES = {"clinician": CLINICIAN, "steward": STEWARD, "auditor": AUDITOR, "admin": ADMIN}

# Django model permissions the admin role also needs for the admin site (sites and users).
# Users: view and (de)activate only (see desk/admin.py); accounts come from invitations.
ADMIN_MODEL_PERMISSIONS = [
    ("sync", "site", ("view", "add", "change")),
    ("auth", "user", ("view", "change")),
]


def role_of(name: str) -> str:
    """Accept 'clinician' or 'clinician reviewer'; raise ValueError on anything else."""
    role = ROLE_ALIASES.get(name, name)
    if role not in ROLE_PERMISSIONS:
        raise ValueError(f"unknown role {name!r}; one of: {', '.join(ROLE_ALIASES)}")
    return role


def demo_enabled() -> bool:
    """A demo runs only with DEBUG and CONFLICTDESK_DEMO_MODE both on; production never honours the flag."""
    return bool(settings.DEBUG and settings.CONFLICTDESK_DEMO_MODE)


def is_demo(user) -> bool:
    return demo_enabled() and user.is_authenticated and user.groups.filter(name=DEMO).exists()
