"""HTTP clients for the openEHR CDRs and the central FHIR server.

Pure Python on httpx with no Django imports, so Celery workers and scripts can
use them directly. Import the client you need from its module; errors live in
``sync.clients.errors``.
"""
