"""Desk fixtures: one signed-in client per role, and the engine's outside world faked.

``engine_hook`` replaces the action that starts the resolution run, so unit
tests see exactly what a decision hands to the engine; ``live_versions``
stands in for the two servers' current versions (default: unchanged since the
conflict was opened).
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from sync.actions import conflicts as conflict_actions
from sync.workflow import versions

from . import factories as f


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """PBKDF2 at full strength costs ~0.3 s per user; these tests are about access, not hashing."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    """Login failures are counted in the cache: each test starts with none (all tests come from 127.0.0.1)."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def people(db):
    return SimpleNamespace(
        clinician=f.make_user("clara@desk.test", f.ROLE_USERS["clinician"]),
        steward=f.make_user("stefan@desk.test", f.ROLE_USERS["steward"]),
        auditor=f.make_user("aude@desk.test", f.ROLE_USERS["auditor"]),
        admin=f.make_user("adam@desk.test", f.ROLE_USERS["admin"]),
        norole=f.make_user("nora@desk.test"),
    )


@pytest.fixture
def login(client):
    def as_(user):
        client.force_login(user)
        return client

    return as_


@pytest.fixture
def conflict(db):
    return f.make_conflict()


@pytest.fixture
def engine_hook(monkeypatch):
    calls = []

    def start(resolution, *, acting_user):
        calls.append(resolution)
        return SimpleNamespace(pk=4242)

    monkeypatch.setattr(conflict_actions, "do_start_resolution_run", start)
    return calls


@pytest.fixture
def live_versions(monkeypatch):
    """Current server versions: what the conflict saw, unless a test moves them."""
    moved = {}

    def current(conflict):
        seen = versions.versions_seen(conflict)
        return {"openehr": moved.get("openehr", seen["openehr"]), "fhir": {**seen["fhir"], **moved.get("fhir", {})}}

    monkeypatch.setattr(versions, "current_versions", current)
    return moved
