"""Scale-out: two Celery worker nodes (w1@host, w2@host) and one beat against one PostgreSQL and one broker.

A burst of site commits (several records, several quick versions each) at the
real EHRbase is synced to the real HAPI by both workers at once. Asserted: no
source version is processed twice (one write attempt, one audit ``sync.write``,
one set of EngineWrite rows, one Provenance each), every record's versions are
applied in site order (central version n holds site version n; runs of one
record never overlap in time), both nodes did work, the change feed reconciles
clean and every audit chain verifies.

The broker is a private redis-server on a free port (tests/harness), not the
shared 6379/15: another engineer's worker on that database would take our
hints and look for our run ids in its own test database.
"""
from __future__ import annotations

import math
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from audit.models import AuditEvent
from audit.verify import verify_all
from sync.clients.fhir import FHIRClient
from sync.clients.openehr import OpenEHRClient, template_id_of
from sync.detection import poll_site
from sync.identity import provenance_id, record_key
from sync.models import ChangeEvent, Cursor, DeadLetter, EngineWrite, RecordLink, RunAttempt, Site, SyncRun
from sync.workflow import dispatch
from sync.workflow.reconcile import reconcile_site
from tests.harness import Engine, PrivateRedis, db_url_of, engine_env, wait_for
from tests.harness.vitals import CORPUS, SYSTOLIC_LOINC, TEMPLATE, vitals

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECORDS, VERSIONS = 6, 3
NODES, CHILDREN = ("w1", "w2"), 2


@pytest.fixture
def broker(tmp_path):
    with PrivateRedis(tmp_path) as redis:
        yield redis.url


@pytest.fixture
def cluster(broker, transactional_db, tmp_path, fhir_base_url, monkeypatch):
    """w1 and w2 (prefork, 2 children each) and ONE beat, as docs/scale-out.md deploys them."""
    from conflictdesk.celery import app
    from sync.tasks import run_sync

    def send(run_id, countdown):  # the test process's own hints go to the private broker too
        with app.connection_for_write(broker) as conn:
            run_sync.apply_async(args=[run_id], countdown=countdown, connection=conn)

    monkeypatch.setattr(dispatch, "send", send)
    env = engine_env(
        db_url_of(connection.settings_dict), broker, fhir_base_url,
        CONFLICTDESK_SWEEP_SECONDS=2,
        CONFLICTDESK_REDISPATCH_AFTER_SECONDS=10,
        CONFLICTDESK_RUN_LEASE_SECONDS=30,
        CONFLICTDESK_POLL_OVERLAP_SECONDS=5,
        CONFLICTDESK_LOG_LEVEL="WARNING",
    )
    # Detection through beat's poll_due, as before sync_poll_loop existed: no poll loop here.
    with Engine(env, tmp_path, nodes=NODES, concurrency=CHILDREN, poll_loop=False) as engine:
        yield engine


@pytest.fixture
def site(transactional_db, ehrbase_urls):
    # A name of its own: the central identifiers embed it, so a parallel run's records never meet ours.
    site = Site.objects.create(name=f"tw{uuid.uuid4().hex[:6]}", openehr_base_url=ehrbase_urls[0],
                               poll_interval_seconds=1, local_demo=True)
    Cursor.objects.create(source=f"site:{site.name}", position=datetime.now(timezone.utc) - timedelta(seconds=1))
    return site


def sessions_opened() -> int:
    """Connections ever opened to the test database (PostgreSQL's own count; the next statement's snapshot)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def systolic(resource: dict):
    for component in resource.get("component", []):
        if any(c.get("code") == SYSTOLIC_LOINC for c in component["code"].get("coding", [])):
            return component["valueQuantity"]["value"]
    return None


def node_of(worker: str, pids: dict[int, str]) -> str:
    """RunAttempt.worker is '<host>:<pid of a pool child>'; the child's parent is the node's main process."""
    pid = int(worker.rsplit(":", 1)[1])
    status = Path(f"/proc/{pid}/status").read_text()
    parent = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
    return pids.get(pid) or pids.get(parent, f"unknown pid {pid}")


def test_two_workers_process_each_version_once_and_in_order(cluster, site, ehrbase_urls, fhir_base_url):
    opt = (CORPUS / "templates" / f"{TEMPLATE}.opt").read_bytes()
    template = template_id_of(opt)
    with OpenEHRClient(ehrbase_urls[0]) as cdr, FHIRClient(fhir_base_url) as fhir:
        cdr.upload_template(opt)
        ehr = cdr.create_ehr(subject_id=f"pat-{uuid.uuid4()}", subject_namespace="conflictdesk-test").ehr_id
        started = datetime.now(timezone.utc)
        # Seed the central Patient first: this test is about records. The race of several first versions
        # of a new patient creating its Patient at once (HAPI's 409 HAPI-0550 to the loser) is handled in
        # sync/workflow/patients.py and tested in tests/engine/test_patient_race.py.
        seed = cdr.create_composition(ehr, vitals(99), template_id=template)
        poll_site(site)
        wait_for(lambda: RecordLink.objects.filter(openehr_version_uid=seed.version_uid).exists(), 120,
                 what="the seed record synced")

        opened_before, t0 = sessions_opened(), time.monotonic()
        # The burst: every record gets a version per round; a detection pass after each round makes every
        # version a ChangeEvent (the feed shows only a composition's latest version) while earlier runs are
        # still in flight on the two workers.
        versions: dict[str, list[str]] = defaultdict(list)
        values: dict[str, list[float]] = defaultdict(list)
        latest = {}
        for round_ in range(VERSIONS):
            for i in range(RECORDS):
                value = 100 + i + 20 * round_
                ref = (cdr.create_composition(ehr, vitals(value), template_id=template) if round_ == 0 else
                       cdr.update_composition(ehr, latest[i].version_uid, vitals(value), template_id=template))
                latest[i] = ref
                versions[ref.uid].append(ref.version_uid)
                values[ref.uid].append(value)
            poll_site(site)
        every_version = [v for vs in versions.values() for v in vs]
        assert len(every_version) == RECORDS * VERSIONS

        def all_finished():
            statuses = list(ChangeEvent.objects.filter(source_version__in=every_version).values_list("status", flat=True))
            return len(statuses) == len(every_version) and all(s in ("synced", "dead_letter", "conflict") for s in statuses)

        wait_for(all_finished, timeout=300, what="every version synced")
        # Connections are reused from task to task: one per pool child for its tasks, replaced once per
        # CONN_MAX_AGE, and one for its lease heartbeat per stretch of runs (each stretch holds a run at least).
        # Celery's own default opened one per task, polls and sweeps included (42 here), the heartbeat one per beat.
        windows = 1 + math.ceil((time.monotonic() - t0) / settings.DATABASES["default"]["CONN_MAX_AGE"])
        opened = sessions_opened() - opened_before
        print(f"\n{opened} database connections opened")
        assert opened <= len(NODES) * CHILDREN * windows + len(every_version)
        letters = [(d.run.change_event.source_version, d.cause, d.step, d.error[:300])
                   for d in DeadLetter.objects.filter(run__change_event__source_version__in=every_version)]
        assert letters == []

        pids = {proc.pid: node for node, proc in cluster.procs.items() if node in NODES}
        nodes_seen = set()
        for vo_uid, site_versions in versions.items():
            runs = list(SyncRun.objects.filter(record_key=record_key(site.name, vo_uid)).order_by("pk"))
            # One run per source version, created in site order.
            assert [r.change_event.source_version for r in runs] == site_versions

            previous_end = None
            for run in runs:
                attempts = list(run.attempts.order_by("started_at", "pk"))
                # Processed once: exactly one non-transient attempt per step, one successful write.
                per_step = defaultdict(int)
                for a in attempts:
                    if a.outcome != "transient":
                        per_step[a.step] += 1
                assert all(n == 1 for n in per_step.values()), (run.pk, dict(per_step))
                assert [a.outcome for a in attempts if a.step == "write"][-1] == "ok"
                writes = AuditEvent.objects.filter(action="sync.write", run_id=run.pk).exclude(outcome="transient")
                assert writes.count() == 1
                # Order kept: a record's runs never overlap, whichever worker ran them.
                if previous_end is not None:
                    assert attempts[0].started_at >= previous_end, f"runs of {vo_uid} overlapped"
                previous_end = attempts[-1].finished_at
                nodes_seen.update(node_of(a.worker, pids) for a in attempts)

            link = RecordLink.objects.get(site=site, versioned_object_uid=vo_uid)
            assert link.openehr_version_uid == site_versions[-1]
            bp = next(r for r in link.fhir_resources if systolic(fhir.read(r["type"], r["id"])) is not None)
            ref = f"{bp['type']}/{bp['id']}"
            # HAPI holds one version per site version, and central version n is site version n.
            assert fhir.read(bp["type"], bp["id"])["meta"]["versionId"] == str(VERSIONS)
            assert [systolic(fhir.vread(bp["type"], bp["id"], str(n))) for n in range(1, VERSIONS + 1)] == values[vo_uid]
            written_by = {w.version: w.run.change_event.source_version
                          for w in EngineWrite.objects.filter(destination="central", object_id=ref).select_related("run__change_event")}
            assert written_by == {str(n): site_versions[n - 1] for n in range(1, VERSIONS + 1)}
            provenances = {p["id"] for p in fhir.search("Provenance", {"target": ref})}
            assert provenances == {provenance_id(v) for v in site_versions}

        assert nodes_seen == set(NODES), f"work done by {nodes_seen}"
        report = reconcile_site(site, started - timedelta(seconds=1), datetime.now(timezone.utc), ehr_id=ehr)
        assert report.unaccounted == [] and set(every_version) <= set(report.by_state["synced"])
        by_node = defaultdict(int)
        for a in RunAttempt.objects.filter(run__record_key__startswith=f"site:{site.name}:"):
            by_node[node_of(a.worker, pids)] += 1
        print(f"\n{len(every_version)} versions; step attempts by node: {dict(by_node)}")
        # Verify once nothing appends any more: verify_partition reads the head, then the rows, in two
        # snapshots, so an append in between (beat keeps polling the shared CDR) reads as a "head" break.
        cluster.stop()
        assert [(r.partition, r.broken) for r in verify_all() if r.broken] == []
