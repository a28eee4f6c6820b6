"""A resolution run commits three times, like a forward run (claim, plan, after both writes), and a worker
that dies between the site's write and the centre's loses neither the write nor its echo record."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sync.models import Resolution, SyncRun
from sync.workflow.echoes import is_own_write
from sync.workflow.runner import advance
from sync.workflow.services import get_services

from .conftest import VO
from .test_checkpoints import WorkerDied, production_counts
from .test_resolution import central_value, conflict, decide, site_latest, start_resolution_run  # noqa: F401


@pytest.fixture(autouse=True)
def mapping_handle(engine):
    engine.services_mapping = get_services().mapping


@pytest.mark.parametrize("choice", [Resolution.Choice.KEEP_SITE, Resolution.Choice.KEEP_CENTRAL,
                                    Resolution.Choice.MERGE])
def test_a_resolution_run_commits_three_times_in_at_most_25_statements(
        engine, conflict, choice, django_capture_on_commit_callbacks):
    run = start_resolution_run(decide(engine, conflict, choice, value=38.5 if choice == "merge" else None))
    with django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as ctx:
        assert advance(run.pk, "w1") == SyncRun.Status.DONE
    statements, commits = production_counts(ctx.captured_queries)
    print(f"{choice} resolution run: {statements} statements, {commits} commits")
    assert commits <= 3, commits
    assert statements <= 25, [q["sql"][:90] for q in ctx.captured_queries]


def test_a_worker_dying_between_the_site_write_and_the_centre_writes_each_once_and_records_the_echo(
        engine, conflict):
    engine.fhir.faults.add("transaction", WorkerDied())
    run = start_resolution_run(decide(engine, conflict, Resolution.Choice.MERGE, value=38.5))
    with pytest.raises(WorkerDied):
        engine.drive(run, "w1")
    assert len(engine.openehr.writes) == 1  # the site took it; nothing after the plan was committed
    SyncRun.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert engine.drive(run, "w2") == SyncRun.Status.DONE
    assert len(engine.openehr.writes) == 1  # recognised as ours, not written again
    assert site_latest(engine) == (engine.openehr.writes[0], 38.5)
    assert central_value(engine)["valueQuantity"]["value"] == 38.5
    assert is_own_write("site:site1", VO, engine.openehr.writes[0])  # its poll will not flow it back
