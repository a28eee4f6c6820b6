"""/metrics after a real sync: real EHRbase, real HAPI, the workflow run in-process, then a scrape.

The runner is driven synchronously here (``advance``): the metrics read the
rows it commits, so which process ran the workflow does not matter.
"""
from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.test import Client

from sync.clients.openehr import OpenEHRClient, template_id_of
from sync.detection import poll_site
from sync.models import ChangeEvent, Cursor, Site, SyncRun
from sync.workflow.runner import advance
from tests.fixtures import OPENEHR_CORPUS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CORPUS = OPENEHR_CORPUS
TEMPLATE = "vital_signs_ehrn"
TOKEN = "scrape-" + uuid.uuid4().hex


def test_a_real_sync_shows_up_in_the_latency_histogram(transactional_db, ehrbase_urls, fhir_base_url, settings,
                                                       monkeypatch):
    settings.CONFLICTDESK_METRICS_TOKEN, settings.CONFLICTDESK_METRICS_CACHE_SECONDS = TOKEN, 0
    settings.CONFLICTDESK_FHIR_BASE_URL = fhir_base_url
    monkeypatch.setattr("sync.workflow.dispatch.send", lambda run_id, countdown: None)  # no broker: run it here
    site = Site.objects.create(name="metrics1", openehr_base_url=ehrbase_urls[0], local_demo=True)
    Cursor.objects.create(source="site:metrics1", position=datetime.now(timezone.utc) - timedelta(seconds=1))
    opt = (CORPUS / "templates" / f"{TEMPLATE}.opt").read_bytes()
    flat = json.loads((CORPUS / "compositions" / f"{TEMPLATE}.flat.json").read_text())
    flat = {k: v for k, v in flat.items() if not k.endswith("/_uid")}
    with OpenEHRClient(ehrbase_urls[0]) as cdr:
        cdr.upload_template(opt)
        ehr = cdr.create_ehr(subject_id=f"pat-{uuid.uuid4()}", subject_namespace="conflictdesk-test").ehr_id
        ref = cdr.create_composition(ehr, flat, template_id=template_id_of(opt))

    assert poll_site(site) >= 1
    run = SyncRun.objects.get(change_event__source_version=ref.version_uid)
    assert advance(run.pk, "metrics-test") == SyncRun.Status.DONE
    event = ChangeEvent.objects.get(pk=run.change_event_id)
    written = run.attempts.filter(step="write").latest("finished_at").finished_at
    latency = (written - event.committed_at).total_seconds()

    client = Client()
    assert client.get("/metrics").status_code == 401
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    text = response.content.decode()
    count = re.search(r'^conflictdesk_sync_latency_seconds_count\{direction="to_fhir",resource_type="(\w+)",'
                      r'site="metrics1"\} (\S+)$', text, re.M)
    assert count, text
    resource_type, observed = count.group(1), float(count.group(2))
    assert resource_type == run.site.record_links.get().fhir_resources[0]["type"] and observed >= 1
    total = float(re.search(r'^conflictdesk_sync_latency_seconds_sum\{direction="to_fhir",resource_type="\w+",'
                            r'site="metrics1"\} (\S+)$', text, re.M).group(1))
    assert abs(total - max(latency, 0.0)) < 0.01
    assert re.search(r'^conflictdesk_runs_total\{outcome="succeeded"\} [1-9]', text, re.M)
    # The shared CDR may hold other tests' compositions that this poll also queued: the gauge must
    # count exactly the site's unfinished events, our synced one not among them.
    unfinished = ChangeEvent.objects.filter(site=site, status__in=("pending", "running"))
    assert not unfinished.filter(pk=event.pk).exists()
    assert f'conflictdesk_backlog{{site="metrics1"}} {float(unfinished.count())}' in text
    assert re.search(r'^conflictdesk_cursor_lag_seconds\{site="metrics1"\} ', text, re.M)
    assert re.search(r"^conflictdesk_celery_queue_depth \d", text, re.M)
