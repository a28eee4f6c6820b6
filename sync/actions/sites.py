"""Sites: create, change, delete; a change of the fidelity guard's mode is audited on its own."""
from __future__ import annotations

from django.db import transaction
from django.db.models import ProtectedError

from audit.record import record_event
from sync.models import Site
from sync.site_policy import credentials_ref_allowed, url_allowed

from .actor import actor_of
from .errors import SiteRefused


def do_create_site(fields: dict, *, acting_user) -> Site:
    """Register a site with ``fields`` (Site's own field names)."""
    check_site_fields(fields)
    with transaction.atomic():
        site = Site.objects.create(**fields)
        actor = actor_of(acting_user)
        record_event(action="site.create", outcome="ok", actor=actor, detail={"site_id": site.pk, "site": site.name})
        # A new site starts from the default mode: starting elsewhere is a change of mode.
        _audit_guard_mode(site, Site.GuardMode.STRICT, actor)
    return site


def do_update_site(site: Site, fields: dict, *, acting_user) -> Site:
    """Change the named fields of a site."""
    check_site_fields(fields)
    with transaction.atomic():
        site = Site.objects.select_for_update().get(pk=site.pk)
        before = site.fidelity_guard
        for name, value in fields.items():
            setattr(site, name, value)
        site.save()
        actor = actor_of(acting_user)
        record_event(action="site.update", outcome="ok", actor=actor,
                     detail={"site_id": site.pk, "site": site.name, "fields": sorted(fields)})
        _audit_guard_mode(site, before, actor)
    return site


def do_delete_site(site: Site, *, acting_user) -> None:
    """Delete a site that never synced anything; one that did is disabled instead (``SiteRefused.InUse``)."""
    try:
        with transaction.atomic():
            record_event(action="site.delete", outcome="ok", actor=actor_of(acting_user),
                         detail={"site_id": site.pk, "site": site.name})
            site.delete()
    except ProtectedError as exc:
        raise SiteRefused.InUse(f"site {site.name} has synced data; set enabled=false instead") from exc


def check_site_fields(fields: dict) -> None:
    """Refuse a URL off the operator's allow-list and a credentials variable outside the prefix (``site_policy``)."""
    if "openehr_base_url" in fields and not url_allowed(fields["openehr_base_url"]):
        raise SiteRefused.Invalid("this URL is not on CONFLICTDESK_SITE_URL_ALLOWLIST", field="openehr_base_url")
    if "credentials_ref" in fields and not credentials_ref_allowed(fields["credentials_ref"] or ""):
        raise SiteRefused.Invalid("must name a CONFLICTDESK_SITE_CREDENTIALS_* variable", field="credentials_ref")
    if fields.get("demographics_url") and not url_allowed(fields["demographics_url"]):
        raise SiteRefused.Invalid("this URL is not on CONFLICTDESK_SITE_URL_ALLOWLIST", field="demographics_url")
    if not credentials_ref_allowed(fields.get("demographics_credentials_ref") or ""):
        raise SiteRefused.Invalid("must name a CONFLICTDESK_SITE_CREDENTIALS_* variable",
                                  field="demographics_credentials_ref")


def _audit_guard_mode(site: Site, before: str, actor: str) -> None:
    """The guard's mode decides whether undeclared loss stops a run: each change is its own event."""
    if site.fidelity_guard != before:
        record_event(action="site.fidelity_guard", outcome="changed", actor=actor,
                     detail={"site_id": site.pk, "from": before, "to": site.fidelity_guard})
