"""A conflict's versions as a clinician saw them and as both servers hold them now.

A decision is applied only while the two agree: ``versions_seen`` is what the
page (or the API's ``versions_seen``) showed, ``current_versions`` reads both
servers through the engine's Services, so the engine's fakes serve the tests.
"""
from __future__ import annotations

from sync.clients.errors import NotFound
from sync.models import Conflict

from .services import get_services


def versions_seen(conflict: Conflict) -> dict:
    """The versions the conflict shows: {"openehr": version uid, "fhir": {"Type/id": versionId or None}}."""
    return {
        "openehr": conflict.openehr_version_uid,
        "fhir": {f"{r['type']}/{r['id']}": (str(r["version"]) if r.get("version") is not None else None)
                 for r in conflict.fhir_versions or []},
    }


def current_versions(conflict: Conflict) -> dict:
    """The versions both servers hold now, in the shape of ``versions_seen`` (None: deleted centrally;
    a composition deleted at the site: its deletion version)."""
    services = get_services()
    link = conflict.record_link
    openehr = services.openehr(link.site)
    try:
        site_version = openehr.get_composition(link.patient_link.ehr_id, link.versioned_object_uid).ref.version_uid
    except NotFound:  # deleted at the site: its deletion is the version there now
        site_version = openehr.revision_history(link.patient_link.ehr_id, link.versioned_object_uid)[-1].version_uid
    central = {}
    for ref in conflict.fhir_versions or []:
        try:
            central[f"{ref['type']}/{ref['id']}"] = str(services.fhir.read(ref["type"], ref["id"])["meta"]["versionId"])
        except NotFound:
            central[f"{ref['type']}/{ref['id']}"] = None
    return {"openehr": site_version, "fhir": central}
