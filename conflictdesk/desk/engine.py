"""The desk's one door into the sync engine.

Everything the desk asks of the engine goes through these functions, so the
engine's module layout can change without touching a view.
``current_versions`` reads both servers through the engine's own Services, so
the same fakes the engine tests use work here.
"""
from __future__ import annotations


def start_resolution_run(resolution):
    """Execute a Resolution as a new SyncRun (If-Match on both sides); called inside the decision's transaction."""
    from sync.actions import start_resolution_run as start

    return start(resolution)


def redrive_dead_letter(letter, *, actor: str):
    from sync.actions import do_redrive_dead_letter

    return do_redrive_dead_letter(letter, actor=actor)


def current_versions(conflict) -> dict:
    """The versions both servers hold now, in the shape ``versions_seen`` captures at render time."""
    from sync.clients.errors import NotFound
    from sync.workflow.services import get_services

    services = get_services()
    link = conflict.record_link
    site_now = services.openehr(link.site).get_composition(link.patient_link.ehr_id, link.versioned_object_uid)
    central = {}
    for ref in conflict.fhir_versions or []:
        try:
            central[f"{ref['type']}/{ref['id']}"] = str(services.fhir.read(ref["type"], ref["id"])["meta"]["versionId"])
        except NotFound:
            central[f"{ref['type']}/{ref['id']}"] = None
    return {"openehr": site_now.ref.version_uid, "fhir": central}


def versions_seen(conflict) -> dict:
    """The versions the conflict shows the clinician (captured into the decision form)."""
    return {
        "openehr": conflict.openehr_version_uid,
        "fhir": {f"{r['type']}/{r['id']}": (str(r["version"]) if r.get("version") is not None else None)
                 for r in conflict.fhir_versions or []},
    }
