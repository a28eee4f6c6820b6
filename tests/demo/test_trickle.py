"""trickle's loop bounds, without servers (a fake client)."""
import os
import signal
import threading

import pytest

from sync.clients.errors import TransientError
from sync.demo.seed import trickle


class FakeCdr:
    def __init__(self, fail=False):
        self.commits, self.fail = [], fail

    def create_composition(self, ehr_id, flat, *, template_id=None):
        if self.fail:
            raise TransientError(method="POST", path="/ehr", reason="down")
        self.commits.append((ehr_id, template_id))

    def query(self, aql, parameters=None):
        return [{"ehr_id": "e1", "subject_id": "SYN-000001"}]


def test_it_stops_after_its_duration():
    cdr = FakeCdr()
    report = trickle({"site1": cdr}, rate_per_s=50, duration_s=0.3, seed=1)
    assert 5 <= report.committed == len(cdr.commits) <= 20
    assert sum(report.by_kind.values()) == report.committed


def test_it_stops_on_sigterm():
    cdr, before = FakeCdr(), signal.getsignal(signal.SIGTERM)
    threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
    report = trickle([cdr], rate_per_s=20, seed=1)  # no duration: until SIGTERM
    assert report.committed >= 1 and report.seconds < 3
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back


def test_it_gives_up_on_a_site_that_stays_down():
    with pytest.raises(TransientError):
        trickle({"site1": FakeCdr(fail=True)}, rate_per_s=1000, seed=1, max_consecutive_failures=3)


def test_it_needs_seeded_ehrs():
    with pytest.raises(ValueError):
        trickle({"site1": FakeCdr()}, rate_per_s=1, duration_s=1, ehrs={"site1": []})
