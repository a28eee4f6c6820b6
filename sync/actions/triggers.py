"""Manual triggers: detect one site, one composition or one patient's compositions now.

The trigger commits its audit event; the detection pass runs on a worker
(``sync.tasks``, sent by name after the commit). Detection records each
version once, so a trigger for something already detected changes nothing.
"""
from __future__ import annotations

from django.db import transaction

from audit.record import record_event
from sync.identity import record_key
from sync.models import PatientLink, Site
from sync.workflow.dispatch import queue_task

from .actor import actor_of

POLL_SITE_TASK = "sync.poll_site"
DETECT_TASK = "sync.detect_compositions"


def do_trigger_site(site: Site, *, acting_user) -> None:
    """One detection pass over the site now (the poller's own pass)."""
    with transaction.atomic():
        record_event(action="api.trigger.site", outcome="queued", actor=actor_of(acting_user),
                     detail={"site_id": site.pk})
        queue_task(POLL_SITE_TASK, site.pk)


def do_trigger_composition(site: Site, ehr_id: str, vo_uid: str, *, acting_user) -> None:
    """Detect the latest version of one composition now."""
    with transaction.atomic():
        record_event(action="api.trigger.composition", outcome="queued", actor=actor_of(acting_user),
                     record_key=record_key(site.name, vo_uid), detail={"site_id": site.pk})
        queue_task(DETECT_TASK, site.pk, ehr_id, [vo_uid])


def do_trigger_patient(link: PatientLink, *, acting_user) -> None:
    """Detect the latest version of every composition in one patient's EHR at their site now."""
    with transaction.atomic():
        record_event(action="api.trigger.patient", outcome="queued", actor=actor_of(acting_user),
                     patient_link_id=link.pk, detail={"site_id": link.site_id})
        queue_task(DETECT_TASK, link.site_id, link.ehr_id, None)
