"""ConflictDesk: openEHR sites <-> central FHIR R4 sync with a clinician conflict desk.

Importing the Celery app here makes `shared_task` bind to it in every process.
"""
from .celery import app as celery_app

__all__ = ("celery_app",)
