"""/metrics: the engine's retry start lag (RunAttempt.start_lag_seconds) and each site's failed polls."""
from datetime import timedelta

from django.utils import timezone

from sync.models import Cursor, RunAttempt
from tests.desk import factories as f

from .test_metrics import sample, scrape, synced_run  # noqa: F401 (the fixture)


def test_retry_start_lag_is_a_histogram_of_the_recorded_lags(db, scrape):
    run = synced_run(f.make_site(), committed_ago=12, written_ago=2)
    t = timezone.now()
    for lag in (0.004, 0.3, 1.7):
        RunAttempt.objects.create(run=run, step="write", number=2, started_at=t, finished_at=t, outcome="ok",
                                  start_lag_seconds=lag)
    text = scrape()
    bucket = "conflictdesk_retry_start_lag_seconds_bucket"
    assert [sample(text, bucket, le=le) for le in ("0.01", "0.5", "1.0", "2.0", "+Inf")] == [1, 2, 2, 3, 3]
    assert sample(text, "conflictdesk_retry_start_lag_seconds_count") == 3
    assert abs(sample(text, "conflictdesk_retry_start_lag_seconds_sum") - 2.004) < 1e-6


def test_a_site_that_does_not_answer_shows_its_failed_polls(db, scrape):
    f.make_site()
    f.make_site("site2")
    Cursor.objects.create(source="site:site2", poll_failures=4, poll_error="TransientError",
                          poll_retry_at=timezone.now() + timedelta(seconds=8))
    text = scrape()
    assert sample(text, "conflictdesk_poll_failures", site="site2") == 4
    assert sample(text, "conflictdesk_poll_failures", site="site1") == 0
    assert sample(text, "conflictdesk_poll_failures", site="central") is None
