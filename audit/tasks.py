"""Celery beat tasks: anchor the audit chain heads on the central FHIR server, and verify the trail.

An anchor lets an outside party detect a rewrite of the local table; a lost
or failed run is harmless, the next tick anchors whatever moved since. The
verification (``audit.status``) checks every chain and every anchor and
records its result, which /metrics and the health page show.
"""
from celery import shared_task
from django.conf import settings

from audit.anchor import anchor_heads
from audit.status import verify_and_record
from sync.clients.fhir import FHIRClient
from sync.workflow.services import central_auth


@shared_task(name="audit.anchor_heads", ignore_result=True)
def anchor_heads_task() -> int:
    with FHIRClient(settings.CONFLICTDESK_FHIR_BASE_URL, auth=central_auth()) as client:
        return len(anchor_heads(client))


@shared_task(name="audit.verify", ignore_result=True)
def verify_task() -> bool:
    with FHIRClient(settings.CONFLICTDESK_FHIR_BASE_URL, auth=central_auth()) as client:
        return verify_and_record(client).intact
