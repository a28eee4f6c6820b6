"""Celery beat task: anchor the audit chain heads on the central FHIR server.

An anchor lets an outside party detect a rewrite of the local table; a lost
or failed run is harmless, the next tick anchors whatever moved since.
"""
from celery import shared_task
from django.conf import settings

from audit.anchor import anchor_heads
from sync.clients.fhir import FHIRClient


@shared_task(name="audit.anchor_heads", ignore_result=True)
def anchor_heads_task() -> int:
    with FHIRClient(settings.CONFLICTDESK_FHIR_BASE_URL) as client:
        return len(anchor_heads(client))
