"""The typed checkpoint of a run: what its commits keep, one dataclass per direction.

A checkpoint holds what was read (the source payload, stored once per run,
and its hash), the plan (expected versions, hashes of what will be written,
the conflict decision) and what was written. It never holds what the pure
steps compute (resources, provenance, clinical content): those are replayed
from the source after a crash, byte for byte (``written_hash`` is the witness),
and live in ``Memory`` for the rest of the worker's pass.

Stored as JSON in ``SyncRun.checkpoint`` (keys are the field names; a field
that is None is left out). Unknown keys (a run checkpointed by an older
engine) are ignored on load; a step that sets an unknown field raises.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


class Typed:
    """Load, update and dump a checkpoint dataclass."""

    @classmethod
    def load(cls, data: dict | None):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in names})

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if not hasattr(self, key):
                raise AttributeError(f"{type(self).__name__} has no field {key!r}")
            setattr(self, key, value)

    def dump(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    # A read-only mapping view, for code that reads a checkpoint by key (state, the guard, the bench).
    def get(self, key: str, default=None):
        value = getattr(self, key, None)
        return default if value is None else value

    def __getitem__(self, key: str):
        if not hasattr(self, key):
            raise KeyError(key)
        return getattr(self, key)


@dataclass
class ForwardCheckpoint(Typed):
    """A site -> central run."""

    # (1) read: the source as read, once per run (the dead-letter view shows it), and who it is about
    source_payload: dict | None = None  # None: the composition was deleted
    vo_uid: str = ""
    version_uid: str = ""
    ehr_id: str = ""
    source_hash: str = ""
    patient_ref: str | None = None
    patient_link_id: int | None = None
    # (2) the plan: hashes of what the pure steps produced, the conflict decision, expected versions
    content_hash: str = ""  # the record's clinical content (the three-way base once acknowledged)
    written_hash: str = ""  # the resources as mapped: what a replay must reproduce exactly
    fidelity: list | None = None  # the guard's diffs when it records rather than stops
    plan: str | None = None  # write | noop | adopt
    expected: dict = field(default_factory=dict)  # record key -> {key, type, id, version} to If-Match
    stale_rechecks: int | None = None
    # (3) written
    written: list | None = None  # [{key, type, id, version}] as the transaction answered
    retired: list | None = None  # the same, for resources marked entered-in-error (the source dropped them)
    provenance_ref: str | None = None
    readback_hash: str | None = None


@dataclass
class Memory:
    """What the pure steps computed in this worker's pass: never stored, replayed after a crash."""

    values: dict[str, Any] = field(default_factory=dict)

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def __getitem__(self, key: str):
        return self.values[key]

    def __setitem__(self, key: str, value) -> None:
        self.values[key] = value

    def get(self, key: str, default=None):
        return self.values.get(key, default)


@dataclass
class ReverseCheckpoint(Typed):
    """A central -> site run: one resource version, written to each target site.

    Its plan keeps the compositions to write (``targets``): they are built from
    what the sites and the centre hold now, so they are reads as much as
    transforms, and a replay must not rebuild them from a later state.
    """

    source_payload: dict | None = None  # the central resource version as read (stored once); None: deleted
    source_hash: str = ""
    removed: dict | None = None  # deleted or entered-in-error: the resource as it was, to take out at the sites
    # per site: site_id, link_id, patient_link_id, ehr_id, vo_uid, template_id, resources, new_uid;
    # then composition, content, record (transform), plan, expected (conflict check), written (write)
    targets: list = field(default_factory=list)
    fidelity: list | None = None
    readback_hash: str | None = None
    stale_rechecks: int | None = None


@dataclass
class ResolutionCheckpoint(Typed):
    """A resolution run: a clinician's chosen content, written to the site and centrally with If-Match."""

    resolution_id: int | None = None
    choice: str = ""
    link_id: int | None = None
    patient_link_id: int | None = None
    ehr_id: str = ""
    vo_uid: str = ""
    template_id: str = ""
    patient_ref: str = ""
    resources: list = field(default_factory=list)  # the chosen resources (the decision's, stored once)
    site_composition: dict | None = None
    expected: dict = field(default_factory=dict)  # the versions decided on: {"openehr": uid, "fhir": {ref: v}}
    source_hash: str = ""
    composition: dict | None = None  # the composition the site gets
    record: dict | None = None
    record_hash: str = ""
    site_plan: str | None = None  # write | noop | done
    site_expected: str | None = None
    site_written: str | None = None  # the site's new version: committed on its own, before the centre
    central_plan: str | None = None
    central_expected: dict | None = None
    written: list | None = None
    site_version: str | None = None
    readback_hash: str | None = None
    stale_rechecks: int | None = None
