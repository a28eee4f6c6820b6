"""Every action writes its audit event, in the transaction of the change it describes.

The actions are found by walking ``sync.actions`` for public ``do_*``
functions, so a new action without a case here fails the first test. Each
case then runs its action twice: once as is (an event naming the acting user
appears, and rolling back the caller's transaction takes both the event and
the change away), once with the audit append failing (the change must be gone
too: it was never committed apart from its event).
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import SimpleNamespace

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth.models import User
from django.db import transaction
from knox.models import AuthToken

import sync.actions
from audit.models import AuditEvent
from sync import models, source
from sync.actions.actor import actor_of
from sync.workflow import versions
from tests.desk import factories as f


def public_actions() -> dict:
    """name -> function, for every public ``do_*`` function of every module of ``sync.actions``."""
    found = {}
    for info in pkgutil.iter_modules(sync.actions.__path__):
        module = importlib.import_module(f"sync.actions.{info.name}")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("do_") and fn.__module__ == module.__name__:
                found[name] = fn
    return found


ACTIONS = public_actions()


def _located(w):
    link = w.conflict.record_link
    return source.Located("Observation/obs-1", link.site, link.patient_link.ehr_id, link.openehr_version_uid,
                          "Provenance/p-1", "provenance", link)


def _fetched(located, *, fmt):
    return source.SourceResult(resource=located.resource, provenance=located.provenance, via=located.via,
                               site=located.site.name, ehr_id=located.ehr_id, version_uid=located.version_uid,
                               format=fmt, content={}, hash="h", last_synced_hash="", last_synced_hash_of="")


def _decide(w):
    return ACTIONS["do_decide_conflict"](
        w.conflict, acting_user=w.clinician, choice="keep_site", reason="checked at the bedside", field_choices={},
        seen=versions.versions_seen(w.conflict))


# name -> (who acts, the call); every public action needs one.
CASES = {
    "do_create_site": ("admin", lambda w: ACTIONS["do_create_site"](
        {"name": "site9", "openehr_base_url": "http://site9.test/v1"}, acting_user=w.admin)),
    "do_update_site": ("admin", lambda w: ACTIONS["do_update_site"](
        w.spare_site, {"fidelity_guard": "record_only"}, acting_user=w.admin)),
    "do_delete_site": ("admin", lambda w: ACTIONS["do_delete_site"](w.spare_site, acting_user=w.admin)),
    "do_decide_conflict": ("clinician", _decide),
    "do_start_resolution_run": ("clinician", lambda w: ACTIONS["do_start_resolution_run"](
        w.resolution, acting_user=w.clinician)),
    "do_redrive_dead_letter": ("steward", lambda w: ACTIONS["do_redrive_dead_letter"](w.letter, acting_user=w.steward)),
    "do_redrive_dead_letters": ("steward", lambda w: ACTIONS["do_redrive_dead_letters"](
        sync.actions.RedriveFilter(site="site1"), acting_user=w.steward)),
    "do_discard_dead_letter": ("steward", lambda w: ACTIONS["do_discard_dead_letter"](
        w.letter, acting_user=w.steward, reason="entered twice")),
    "do_view_source": ("clinician", lambda w: ACTIONS["do_view_source"](
        "Observation", "obs-1", acting_user=w.clinician)),
    "do_trigger_site": ("admin", lambda w: ACTIONS["do_trigger_site"](
        w.conflict.record_link.site, acting_user=w.admin)),
    "do_trigger_composition": ("steward", lambda w: ACTIONS["do_trigger_composition"](
        w.conflict.record_link.site, f.EHR_ID, "vo-1", acting_user=w.steward)),
    "do_trigger_patient": ("admin", lambda w: ACTIONS["do_trigger_patient"](
        w.conflict.record_link.patient_link, acting_user=w.admin)),
    "do_invite_user": ("admin", lambda w: ACTIONS["do_invite_user"](
        "new@desk.test", "auditor", acting_user=w.admin)),
    "do_issue_api_token": (None, lambda w: ACTIONS["do_issue_api_token"](w.steward, acting_user=None, rotate=True)),
    "do_confirm_match": ("steward", lambda w: ACTIONS["do_confirm_match"](
        "Patient/g-1", "Patient/p-2", acting_user=w.steward)),
    "do_reject_match": ("steward", lambda w: ACTIONS["do_reject_match"](
        "Patient/g-1", "Patient/p-2", acting_user=w.steward)),
    "do_merge_golden": ("steward", lambda w: ACTIONS["do_merge_golden"](
        "Patient/g-2", "Patient/g-1", acting_user=w.steward)),
    "do_keep_golden_apart": ("steward", lambda w: ACTIONS["do_keep_golden_apart"](
        "Patient/g-1", "Patient/g-2", acting_user=w.steward)),
    "do_view_patients": ("clinician", lambda w: ACTIONS["do_view_patients"](
        [w.conflict.record_link.patient_link], acting_user=w.clinician, where="conflict")),
}


class FakeMdm:
    """HAPI's MDM operations, answered without a server (the steward actions' own tests use the real one)."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, operation):
        return lambda *args: self.calls.append((operation, args))

# Rows an action may change; a failed action must leave every one of them as it was.
STATE = [models.Site, models.PatientLink, models.RecordLink, models.ChangeEvent, models.SyncRun, models.DeadLetter,
         models.Conflict, models.Resolution, User, User.groups.through, EmailAddress, AuthToken]


def state() -> str:
    return repr([list(model.objects.order_by("pk").values()) for model in STATE])


@pytest.fixture
def world(db, settings, monkeypatch):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    monkeypatch.setattr(versions, "current_versions", versions.versions_seen)  # both servers as the conflict saw them
    monkeypatch.setattr(source, "locate", lambda resource_type, resource_id: _located(w))
    monkeypatch.setattr(source, "fetch", _fetched)
    monkeypatch.setattr("sync.actions.patients.mdm_client", FakeMdm)
    conflict = f.make_conflict()
    w = SimpleNamespace(
        conflict=conflict, letter=f.make_dead_letter(conflict.record_link.site), spare_site=f.make_site("site5"),
        admin=f.make_user("adam@desk.test", f.ROLE_USERS["admin"]),
        clinician=f.make_user("clara@desk.test", f.ROLE_USERS["clinician"]),
        steward=f.make_user("stefan@desk.test", f.ROLE_USERS["steward"]),
    )
    AuthToken.objects.create(w.steward)
    w.resolution = models.Resolution.objects.create(  # decided on another record, its run not started yet
        conflict=f.make_conflict(vo_suffix="beef"), choice="keep_central", reason="checked", content={},
        decided_by=w.clinician)
    return w


class Rollback(Exception):
    pass


def test_every_action_has_a_case():
    assert set(ACTIONS) == set(CASES)
    assert set(ACTIONS) <= set(sync.actions.__all__)  # and the package exports it


@pytest.mark.parametrize("name", sorted(CASES))
def test_it_writes_its_event_and_both_roll_back_together(world, name, django_capture_on_commit_callbacks):
    who, call = CASES[name]
    actor = actor_of(getattr(world, who) if who else None)
    before, events = state(), AuditEvent.objects.count()
    with pytest.raises(Rollback), django_capture_on_commit_callbacks() as hints:
        with transaction.atomic():
            call(world)
            new = list(AuditEvent.objects.order_by("pk")[events:])
            assert new and {e.actor for e in new} == {actor}, [(e.action, e.actor) for e in new]
            raise Rollback
    assert AuditEvent.objects.count() == events and state() == before and hints == []


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_failing_audit_append_undoes_the_change(world, name, monkeypatch, django_capture_on_commit_callbacks):
    def chain_down(*args, **kwargs):
        raise RuntimeError("audit append failed")

    monkeypatch.setattr("audit.record.record_events", chain_down)
    before = state()
    with pytest.raises(RuntimeError, match="audit append failed"), django_capture_on_commit_callbacks() as hints:
        CASES[name][1](world)
    assert state() == before and hints == []  # no row changed, no task or run hint sent
