"""Demo wiring: register the local EHRbase sites and one demo account per role.

Only for `make demo`: sites are marked local_demo (CDRs on loopback) and name
``CONFLICTDESK_SITE_CREDENTIALS_SITE<i>`` as their credentials when the demo set it
(deploy/demo.sh: the CDRs run behind basic auth); accounts are in the demo group (no TOTP). Passwords come from
CONFLICTDESK_DEMO_PASSWORD; the demo prints them, production never runs this.
"""
from __future__ import annotations

import os

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.db import transaction

from conflictdesk.desk.roles import demo_enabled, role_of

from sync.actions import do_create_site, do_invite_user, do_update_site
from sync.models import Site
from sync.site_policy import CREDENTIALS_PREFIX

ONCOLOGY_TEMPLATE_ID = "ConflictDesk Oncology Encounter.v2"  # central writes use it (issue 17)
DEMO_ACCOUNTS = {  # e-mail local part -> role alias (conflictdesk.desk.roles)
    "clinician": "clinician",
    "steward": "steward",
    "auditor": "auditor",
    "admin": "admin",
}


def require_demo_mode() -> None:
    """The demo commands write synthetic patients and TOTP-free accounts: never outside a demo."""
    if not demo_enabled():
        raise CommandError("demo commands run only with DJANGO_DEBUG=1 and CONFLICTDESK_DEMO_MODE=1 (deploy/demo.sh)")


# The demo's local sites: deploy/ehrbase.sh starts site i on port 8100+i.
LOCAL_SITE_URL = "http://127.0.0.1:{port}/ehrbase/rest/openehr/v1"


def site_url(i: int, pattern: str | None = None) -> str:
    """Site i's URL: ``pattern`` (``{i}`` the site number, ``{port}`` 8100+i) or the local convention."""
    return (pattern or LOCAL_SITE_URL).format(i=i, port=8100 + i)


def ensure_sites(n: int, *, url_pattern: str | None, poll_interval_seconds: int) -> list[Site]:
    """Create or refresh Site rows site1..siteN (idempotent), audited like any site change."""
    sites = []
    with transaction.atomic():
        for i in range(1, n + 1):
            fields = {
                "display_name": f"Oncology site {i}",
                "openehr_base_url": site_url(i, url_pattern),
                "poll_interval_seconds": poll_interval_seconds,
                "enabled": True,
                "local_demo": True,
                "credentials_ref": f"{CREDENTIALS_PREFIX}SITE{i}" if os.environ.get(f"{CREDENTIALS_PREFIX}SITE{i}") else "",
                "template_ids": [ONCOLOGY_TEMPLATE_ID],
                # Demographics in EHR_STATUS, one MRN system per site: HAPI's MDM matches the people
                # registered at several sites (sync/demo/people.py).
                "demographics_source": Site.Demographics.EHR_STATUS,
                "mrn_system": f"urn:conflictdesk:demo:site{i}:mrn",
            }
            site = Site.objects.filter(name=f"site{i}").first()
            if site is None:
                site = do_create_site({"name": f"site{i}", **fields}, acting_user=None)
            else:
                site = do_update_site(site, fields, acting_user=None)
            sites.append(site)
    return sites


def ensure_demo_accounts(password: str, domain: str = "demo.conflictdesk.local") -> list[tuple[str, str]]:
    """One demo account per role with a known password; returns [(email, role)]."""
    accounts = []
    for local, role in DEMO_ACCOUNTS.items():
        email = f"{local}@{domain}"
        user = get_user_model().objects.filter(username=email, groups__name=role_of(role)).first()
        if user is None:  # a re-run finds its accounts and sends no invitation again
            user, _link = do_invite_user(email, role, acting_user=None, demo=True)
        user.set_password(password)  # the demo prints it; invited staff set their own through the link
        user.save(update_fields=["password"])
        accounts.append((email, role))
    return accounts
