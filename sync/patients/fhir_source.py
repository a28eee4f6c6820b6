"""A site's demographics from its own FHIR Patient endpoint (a demographic service / MPI of the site).

The EHR_STATUS subject still names the patient (the MRN); the site's service is searched by that
identifier (``mrn_system|MRN``) and its Patient read into ``Demographics``. The URL must be on the
operator's allow-list and the credentials come from a ``CONFLICTDESK_SITE_CREDENTIALS_*``
variable, as for the site's CDR: a site row cannot send credentials elsewhere.
"""
from __future__ import annotations

import os

from django.conf import settings

from sync.clients.fhir import FHIRClient
from sync.site_policy import credentials_ref_allowed, url_allowed

from .demographics import Demographics


class DemographicsConfigError(Exception):
    """The site's demographic service is not usable as configured (names the site, never a patient)."""


def client_for(site) -> FHIRClient:
    if not site.demographics_url or not url_allowed(site.demographics_url):
        raise DemographicsConfigError(f"site {site.name}: demographics_url is missing or not on the URL allow-list")
    auth = None
    if site.demographics_credentials_ref:
        raw = os.environ.get(site.demographics_credentials_ref, "") if credentials_ref_allowed(
            site.demographics_credentials_ref) else ""
        if ":" not in raw:
            raise DemographicsConfigError(f"site {site.name}: demographics_credentials_ref names no usable "
                                          "CONFLICTDESK_SITE_CREDENTIALS_* variable")
        auth = tuple(raw.split(":", 1))
    return FHIRClient(site.demographics_url, auth=auth, timeout=settings.CONFLICTDESK_HTTP_TIMEOUT_SECONDS)


def lookup(fhir: FHIRClient, mrn_system: str, mrn: str) -> Demographics | None:
    """The site service's Patient with this MRN as Demographics (None when it has none)."""
    patient = next(fhir.search("Patient", {"identifier": f"{mrn_system}|{mrn}"}), None)
    if patient is None:
        return None
    name = (patient.get("name") or [{}])[0]
    meta = patient.get("meta") or {}
    return Demographics(
        mrn_system=mrn_system, mrn=mrn,
        family=name.get("family", ""), given=tuple(name.get("given", [])),
        birth_date=patient.get("birthDate", ""), sex=patient.get("gender", ""),
        postal_code=((patient.get("address") or [{}])[0]).get("postalCode", ""),
        version=f"fhir:{patient.get('id', '')}/_history/{meta.get('versionId', '')}@{meta.get('lastUpdated', '')}",
    )
