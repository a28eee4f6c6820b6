"""The outside world as the workflow sees it: clients, the mapping layer, the audit chain.

Steps reach every collaborator through one ``Services`` object so the unit
tests swap in fakes with ``use_services`` and the code under test stays the
code that runs in production.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable

from django.conf import settings

from audit.chain import payload_hash
from audit.record import record_event, system_actor
from sync import mapping
from sync.clients.fhir import FHIRClient
from sync.clients.openehr import OpenEHRClient
from sync.site_policy import credentials_ref_allowed, url_allowed


class SiteConfigError(Exception):
    """A site the engine must not talk to as configured (missing credentials)."""


@dataclass
class Services:
    fhir: Any
    openehr: Callable[[Any], Any]  # Site -> OpenEHRClient
    mapping: Any  # to_fhir, build_provenance, to_openehr, from_fhir, validate_fhir, clinical_content, compare_clinical
    audit: Any  # record_event, payload_hash, system_actor


_override: Services | None = None


def get_services() -> Services:
    return _override or _default_services()


@contextmanager
def use_services(services: Services):
    """Run the block with ``services`` instead of the real ones (tests)."""
    global _override
    previous, _override = _override, services
    try:
        yield services
    finally:
        _override = previous


def site_auth(site) -> tuple[str, str] | None:
    """Basic credentials from the environment variable the site names; never from the database.

    Only a ``CONFLICTDESK_SITE_CREDENTIALS_*`` variable is ever read, whatever the row says.
    """
    if site.credentials_ref:
        if not credentials_ref_allowed(site.credentials_ref):
            raise SiteConfigError(f"site {site.name}: credentials_ref is not a CONFLICTDESK_SITE_CREDENTIALS_* variable")
        raw = os.environ.get(site.credentials_ref, "")
        if ":" not in raw:
            raise SiteConfigError(f"site {site.name}: ${site.credentials_ref} is unset or not 'user:password'")
        user, password = raw.split(":", 1)
        return user, password
    if site.local_demo:
        return None
    raise SiteConfigError(f"site {site.name} has no credentials_ref and is not marked local_demo")


# One HTTP client per server and process, reused by every step: keep-alive connections
# instead of a new client (and TCP connection) per step. The key holds everything the
# client was built from, so a changed URL, credential or timeout gets a new one, and the
# pid, so a forked worker child never shares its parent's sockets.
_clients: dict[tuple, Any] = {}


def _cached_client(key: tuple, make: Callable[[], Any]) -> Any:
    """The process's client for ``key``; a new one if there is none yet or a caller closed it."""
    key = (os.getpid(), *key)
    client = _clients.get(key)
    if client is None or client.http.closed:
        client = _clients[key] = make()
    return client


def _openehr_client(site):
    if not url_allowed(site.openehr_base_url):
        raise SiteConfigError(f"site {site.name}: URL is not on CONFLICTDESK_SITE_URL_ALLOWLIST")
    url, auth, timeout = site.openehr_base_url, site_auth(site), settings.CONFLICTDESK_HTTP_TIMEOUT_SECONDS
    return _cached_client(("openehr", url, auth, timeout), lambda: OpenEHRClient(url, auth=auth, timeout=timeout))


def central_auth() -> tuple[str, str] | None:
    """Basic credentials for the central FHIR server (CONFLICTDESK_FHIR_CREDENTIALS), or None."""
    raw = settings.CONFLICTDESK_FHIR_CREDENTIALS
    if not raw:
        return None
    user, password = raw.split(":", 1)
    return user, password


def _default_services() -> Services:
    url, timeout, auth = settings.CONFLICTDESK_FHIR_BASE_URL, settings.CONFLICTDESK_HTTP_TIMEOUT_SECONDS, central_auth()
    fhir = _cached_client(("fhir", url, auth, timeout), lambda: FHIRClient(url, auth=auth, timeout=timeout))
    return Services(
        fhir=fhir,
        openehr=_openehr_client,
        mapping=SimpleNamespace(
            to_fhir=mapping.to_fhir,
            to_openehr=mapping.to_openehr,
            from_fhir=mapping.from_fhir,  # the reverse transform with its declared losses (fidelity guard)
            map_back=mapping.map_back,  # the guard's rebuild of the entries (from_fhir without its loss report)
            compare_clinical=mapping.compare_clinical,  # the fidelity guard's comparison
            build_provenance=mapping.build_provenance,
            validate_fhir=mapping.validate_fhir,
            clinical_content=mapping.clinical_content,
        ),
        audit=SimpleNamespace(record_event=record_event, payload_hash=payload_hash, system_actor=system_actor),
    )
