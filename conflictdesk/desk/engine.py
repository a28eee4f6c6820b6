"""The desk's one door into the sync engine.

Everything the desk asks of the engine goes through these functions, so the
engine's module layout can change (or land late) without touching a view.
``current_versions`` reads both servers through the engine's own Services, so
the same fakes the engine tests use work here.
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class EngineUnavailable(Exception):
    """The engine does not (yet) offer what the desk needs."""


def start_resolution_run(resolution):
    """Execute a Resolution as a new SyncRun (If-Match on both sides); called inside the decision's transaction.

    Looked up at call time: the engine names it ``start_resolution_run`` in
    ``sync.actions`` or ``sync.workflow.resolution``. Returns the run, or
    raises EngineUnavailable when neither exists yet.
    """
    for module_name in ("sync.actions", "sync.workflow.resolution"):
        try:
            module = __import__(module_name, fromlist=["start_resolution_run"])
        except ImportError:
            continue
        func = getattr(module, "start_resolution_run", None)
        if func is not None:
            return func(resolution)
    raise EngineUnavailable("the engine has no start_resolution_run yet")


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
