"""Put synthetic patients into openEHR sites, keep events flowing, and stage conflicts.

Written against ``OpenEHRClient`` and ``FHIRClient`` only (no Django), so the demo launcher, the
management command and the tests share it.

Idempotency: every seeded composition gets a deterministic uid,
``uuid5(seed, subject, event key)`` at the site's system id, so a re-run with the same seed finds
what the previous run committed (GET by uid) and commits only what is missing; a revision
(``Event.revises``) is applied only while the composition is still below that version. EHRs are
found by subject (``find_ehr``) before one is created. A different seed on the same subject ids
would add a second story to the same EHRs: use another ``prefix`` (or ``first_index``) for it.
"""
from __future__ import annotations

import logging
import random
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Mapping

from sync.clients.errors import ClientError, InvalidRequest, NotFound, TransientError
from sync.clients.openehr import OpenEHRClient, TemplateUpload, VersionRef

from . import general
from .flat import ROOT, TEMPLATE_ID
from .generator import SUBJECT_NAMESPACE, Patient, generate_patients, trickle_composition
from .invalid import COMPOSER as INVALID_COMPOSER
from .invalid import DEAD_LETTER_KINDS, invalid_case

log = logging.getLogger(__name__)

OPT_PATH = Path(__file__).resolve().parents[2] / "deploy" / "templates" / "conflictdesk_oncology.v2.opt"
# v1 stays uploaded: compositions stored under it keep a template to be read and versioned with.
OPT_V1_PATH = OPT_PATH.with_name("conflictdesk_oncology.v1.opt")
_UID_NS = uuid.UUID("0b7f0f5e-3c57-4d0a-9d4e-5a1c2f8e6d31")
Progress = Callable[[str], None]


def composition_uid(seed: int, subject_id: str, key: str) -> str:
    return str(uuid.uuid5(_UID_NS, f"{seed}|{subject_id}|{key}"))


def ensure_template(client: OpenEHRClient) -> TemplateUpload:
    """Upload the oncology OPT (and v1, for data stored under it); a CDR that has it already answers 409, fine."""
    client.upload_template(OPT_V1_PATH.read_bytes())
    return client.upload_template(OPT_PATH.read_bytes())


@dataclass
class PatientSeed:
    subject_id: str
    ehr_id: str
    created: int = 0
    skipped: int = 0
    refs: dict[str, VersionRef] = field(default_factory=dict)


@dataclass
class SiteSeed:
    patients: list[PatientSeed]
    seconds: float
    template_created: bool

    @property
    def created(self) -> int:
        return sum(p.created for p in self.patients)

    @property
    def skipped(self) -> int:
        return sum(p.skipped for p in self.patients)


def ensure_ehr(client: OpenEHRClient, subject_id: str, namespace: str = SUBJECT_NAMESPACE):
    """(EHR, created): the subject's EHR, found first so re-runs never make a twin."""
    found = client.find_ehr(subject_id, namespace)
    if found is not None:
        return found, False
    return client.create_ehr(subject_id=subject_id, subject_namespace=namespace), True


def seed_patient(client: OpenEHRClient, patient: Patient, seed: int) -> PatientSeed:
    """Commit the patient's compositions that the site does not have yet (see module doc)."""
    ehr, fresh = ensure_ehr(client, patient.subject_id)
    system_id = ehr.system_id or client.get_ehr(ehr.ehr_id).system_id
    result = PatientSeed(patient.subject_id, ehr.ehr_id)
    for event in patient.events:
        uid = composition_uid(seed, patient.subject_id, event.revises or event.key)
        # A fresh EHR has no compositions: skip the lookups (half the requests of a first run).
        current = result.refs.get(event.revises or event.key) if fresh else _current(client, ehr.ehr_id, uid)
        if event.revises:
            version = 1 + sum(1 for e in patient.events[: patient.events.index(event) + 1] if e.revises == event.revises)
            if current is None or current.version >= version:
                result.skipped += 1  # a missing base is a deleted composition: leave it deleted
                if current is not None:
                    result.refs[event.revises] = current
                continue
            ref = client.update_composition(ehr.ehr_id, current.version_uid, event.flat, template_id=TEMPLATE_ID)
            result.refs[event.revises] = ref
            result.created += 1
            continue
        if current is not None:
            result.refs[event.key], result.skipped = current, result.skipped + 1
            continue
        flat = {**event.flat, f"{ROOT}/_uid": f"{uid}::{system_id}::1"}
        try:
            result.refs[event.key] = client.create_composition(ehr.ehr_id, flat, template_id=TEMPLATE_ID)
            result.created += 1
        except InvalidRequest as exc:
            if "already exists" not in str(exc.detail):  # deleted at the site, or a racing seeder
                raise
            result.skipped += 1
    return result


def _current(client: OpenEHRClient, ehr_id: str, uid: str) -> VersionRef | None:
    try:
        return client.get_composition(ehr_id, uid).ref
    except NotFound:
        return None


def seed_site(client: OpenEHRClient, n_patients: int, seed: int, *, first_index: int = 0, prefix: str = "SYN",
              facility: str = "Synthetic Oncology Centre", progress: Progress | None = None) -> SiteSeed:
    """Upload the template, then seed ``n_patients`` patients (``prefix-first_index`` onwards)."""
    started = time.monotonic()
    upload = ensure_template(client)
    client.upload_template(general.OPT_PATH.read_bytes())
    out = []
    for i, patient in enumerate(generate_patients(n_patients, seed, first_index=first_index, prefix=prefix,
                                                  facility=facility), 1):
        out.append(seed_patient(client, patient, seed))
        # the general record (issue 18), one composition of its own template, committed once
        fresh = general.seed_general(client, out[-1].ehr_id, seed, patient.subject_id, patient.events[-1].when)
        out[-1].created, out[-1].skipped = out[-1].created + bool(fresh), out[-1].skipped + (not fresh)
        if progress:
            p = out[-1]
            progress(f"{i}/{n_patients} {p.subject_id} ({patient.cancer}): {p.created} committed, {p.skipped} already there")
    return SiteSeed(out, time.monotonic() - started, upload.created)


def synthetic_ehrs(client: OpenEHRClient, namespace: str = SUBJECT_NAMESPACE) -> list[dict[str, str]]:
    """``[{ehr_id, subject_id}]`` of every EHR whose subject is in the synthetic namespace."""
    return client.query(
        "SELECT e/ehr_id/value AS ehr_id, e/ehr_status/subject/external_ref/id/value AS subject_id "
        "FROM EHR e WHERE e/ehr_status/subject/external_ref/namespace = $ns",
        {"ns": namespace},
    )


# --- trickle --------------------------------------------------------------------------------
@dataclass
class TrickleReport:
    committed: int = 0
    failed: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _named(clients: Mapping[str, OpenEHRClient] | Iterable[OpenEHRClient]) -> list[tuple[str, OpenEHRClient]]:
    if isinstance(clients, Mapping):
        return list(clients.items())
    return [(f"site{i}", c) for i, c in enumerate(clients, 1)]


class _StopOnSignal:
    """Sets ``stop`` on SIGTERM/SIGINT while active (main thread only; elsewhere a no-op)."""

    def __init__(self, stop: threading.Event):
        self.stop, self.previous = stop, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, lambda *_: self.stop.set())
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def trickle(clients, rate_per_s: float, duration_s: float | None = None, seed: int = 0, *,
            ehrs: Mapping[str, list[str]] | None = None, stop: threading.Event | None = None,
            max_consecutive_failures: int = 20, progress: Progress | None = None,
            progress_every: int = 50) -> TrickleReport:
    """Commit small clinical events (vitals, labs) to random synthetic EHRs at ``rate_per_s``.

    Runs ``duration_s`` seconds, or until SIGTERM/SIGINT or ``stop`` when ``duration_s`` is None.
    Transport errors are counted and the loop goes on; it gives up after
    ``max_consecutive_failures`` failures in a row (a site that is down for good).
    """
    if rate_per_s <= 0:
        raise ValueError("rate_per_s must be positive")
    rng = random.Random(f"trickle|{seed}")
    sites = _named(clients)
    targets = {name: list(ehrs[name]) if ehrs else [r["ehr_id"] for r in synthetic_ehrs(c)] for name, c in sites}
    sites = [(name, c) for name, c in sites if targets[name]]
    if not sites:
        raise ValueError("no synthetic EHRs to trickle into: seed the sites first")
    stop = stop or threading.Event()
    report, started, failures_in_row = TrickleReport(), time.monotonic(), 0
    interval, next_at = 1.0 / rate_per_s, time.monotonic()
    with _StopOnSignal(stop):
        while not stop.is_set() and (duration_s is None or time.monotonic() - started < duration_s):
            name, client = rng.choice(sites)
            kind, flat = trickle_composition(rng, datetime.now(timezone.utc))
            try:
                client.create_composition(rng.choice(targets[name]), flat, template_id=TEMPLATE_ID)
            except (TransientError, ClientError) as exc:
                report.failed, failures_in_row = report.failed + 1, failures_in_row + 1
                log.warning("trickle: %s commit failed: %s", name, exc)
                if failures_in_row >= max_consecutive_failures:
                    raise
            else:
                failures_in_row = 0
                report.committed += 1
                report.by_kind[kind] = report.by_kind.get(kind, 0) + 1
                if progress and report.committed % progress_every == 0:
                    progress(f"trickle: {report.committed} events committed ({report.failed} failed)")
            next_at += interval
            stop.wait(max(0.0, next_at - time.monotonic()))
    report.seconds = time.monotonic() - started
    return report


# --- dead letters ---------------------------------------------------------------------------
def invalid_held(client: OpenEHRClient, ehr_id: str) -> int:
    """How many of the demo's invalid compositions the EHR already holds (a re-run commits no more)."""
    return len(client.query("SELECT c/uid/value AS uid FROM EHR e[ehr_id/value=$ehr_id] CONTAINS COMPOSITION c "
                            "WHERE c/composer/name = $composer", {"ehr_id": ehr_id, "composer": INVALID_COMPOSER}))


def commit_invalid(client: OpenEHRClient, ehr_id: str, count: int, seed: int = 0, *,
                   offset: int = 0) -> list[tuple[str, VersionRef]]:
    """Commit ``count`` compositions the site accepts and the engine will dead-letter.

    The kinds (``invalid.DEAD_LETTER_KINDS``) take turns, starting at ``offset``."""
    rng = random.Random(f"invalid|{seed}|{offset}")
    out = []
    for i in range(count):
        kind = DEAD_LETTER_KINDS[(offset + i) % len(DEAD_LETTER_KINDS)]
        case = invalid_case(kind, rng, datetime.now(timezone.utc))
        out.append((case.kind, client.create_composition(ehr_id, case.flat, template_id=TEMPLATE_ID)))
    return out
