"""The API's own state changes (sites, manual triggers), each audited in its transaction.

Conflicts and dead letters are NOT here: the API calls the desk's
``conflictdesk.desk.services`` so both doors apply identical rules.
"""
from __future__ import annotations

from django.db import transaction
from django.db.models import ProtectedError

from audit.record import record_event
from conflictdesk.desk.access import actor_of
from sync.models import PatientLink, Site

from . import tasks


class SiteInUse(Exception):
    """The site has synced data (links, runs, events): disable it instead of deleting it."""


def do_create_site(data: dict, *, user) -> Site:
    with transaction.atomic():
        site = Site(**data)
        site.audit_actor = actor_of(user)  # named in the guard-mode audit event (Site.save)
        site.save()
        record_event(action="api.site.create", outcome="ok", actor=actor_of(user),
                     detail={"site_id": site.pk, "site": site.name})
    return site


def do_update_site(site: Site, data: dict, *, user) -> Site:
    with transaction.atomic():
        site = Site.objects.select_for_update().get(pk=site.pk)
        for name, value in data.items():
            setattr(site, name, value)
        site.audit_actor = actor_of(user)  # named in the guard-mode audit event (Site.save)
        site.save()
        record_event(action="api.site.update", outcome="ok", actor=actor_of(user),
                     detail={"site_id": site.pk, "site": site.name, "fields": sorted(data)})
    return site


def do_delete_site(site: Site, *, user) -> None:
    try:
        with transaction.atomic():
            record_event(action="api.site.delete", outcome="ok", actor=actor_of(user),
                         detail={"site_id": site.pk, "site": site.name})
            site.delete()
    except ProtectedError as exc:
        raise SiteInUse(f"site {site.name} has synced data; set enabled=false instead") from exc


# --- manual triggers: rows and audit now, network work on a worker ------------

def do_trigger_site(site: Site, *, user) -> None:
    """One detection pass over the site now (the engine's own poll task)."""
    from sync.tasks import poll_site

    with transaction.atomic():
        record_event(action="api.trigger.site", outcome="queued", actor=actor_of(user), partition="desk",
                     detail={"site_id": site.pk})
        transaction.on_commit(lambda: poll_site.delay(site.pk))


def do_trigger_composition(site: Site, ehr_id: str, vo_uid: str, *, user) -> None:
    """Detect the latest version of one composition now (a no-op when it is already recorded)."""
    with transaction.atomic():
        record_event(action="api.trigger.composition", outcome="queued", actor=actor_of(user), partition="desk",
                     record_key=f"site:{site.name}:{vo_uid}", detail={"site_id": site.pk})
        transaction.on_commit(lambda: tasks.sync_compositions.delay(site.pk, ehr_id, [vo_uid]))


def do_trigger_patient(link: PatientLink, *, user) -> None:
    """Detect the latest version of every composition in one patient's EHR at their site now."""
    with transaction.atomic():
        record_event(action="api.trigger.patient", outcome="queued", actor=actor_of(user), partition="desk",
                     patient_link_id=link.pk, detail={"site_id": link.site_id})
        transaction.on_commit(lambda: tasks.sync_compositions.delay(link.site_id, link.ehr_id, None))
