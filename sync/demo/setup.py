"""Demo wiring: register the local EHRbase sites and one demo account per role.

Only for `make demo`: sites are marked local_demo (unauthenticated CDRs on
loopback) and accounts are in the demo group (no TOTP). Passwords come from
CONFLICTDESK_DEMO_PASSWORD; the demo prints them, production never runs this.
"""
from __future__ import annotations

from django.db import transaction

ONCOLOGY_TEMPLATE_ID = "ConflictDesk Oncology Encounter.v1"
DEMO_ACCOUNTS = {  # e-mail local part -> role alias (conflictdesk.desk.roles)
    "clinician": "clinician",
    "steward": "steward",
    "auditor": "auditor",
    "admin": "admin",
}


def site_url(i: int, pattern: str) -> str:
    return pattern.format(i=i, port=8100 + i)


def ensure_sites(n: int, *, url_pattern: str, poll_interval_seconds: int) -> list:
    """Create or refresh Site rows site1..siteN (idempotent)."""
    from sync.models import Site

    sites = []
    with transaction.atomic():
        for i in range(1, n + 1):
            site, _ = Site.objects.update_or_create(
                name=f"site{i}",
                defaults={
                    "display_name": f"Oncology site {i}",
                    "openehr_base_url": site_url(i, url_pattern),
                    "poll_interval_seconds": poll_interval_seconds,
                    "enabled": True,
                    "local_demo": True,
                    "template_ids": [ONCOLOGY_TEMPLATE_ID],
                },
            )
            sites.append(site)
    return sites


def ensure_demo_accounts(password: str, domain: str = "demo.conflictdesk.local") -> list[tuple[str, str]]:
    """One demo account per role with a known password; returns [(email, role)]."""
    from conflictdesk.desk.services import invite_user

    accounts = []
    for local, role in DEMO_ACCOUNTS.items():
        email = f"{local}@{domain}"
        user, _link = invite_user(email, role, invited_by="cli:demo_setup", demo=True)
        user.set_password(password)
        user.save(update_fields=["password"])
        accounts.append((email, role))
    return accounts
