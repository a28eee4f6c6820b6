"""Two runs creating one new patient at once both end on the same Patient."""
from types import SimpleNamespace

import pytest

from sync.clients.errors import PreconditionFailed
from sync.workflow.patients import ensure_central_patient


class RacingFHIR:
    """Answers the first conditional create with HAPI's 409, as the losing racer sees it."""

    def __init__(self, losses: int):
        self.losses = losses
        self.calls = []

    def create(self, resource, *, if_none_exist=None):
        self.calls.append(if_none_exist)
        if self.losses:
            self.losses -= 1
            raise PreconditionFailed(method="POST", path="/fhir/Patient", status=409, detail=None)
        return SimpleNamespace(id="p-1", version_id="1", created=False)


class NoSubject:
    class http:
        @staticmethod
        def request(*args, **kwargs):
            return SimpleNamespace(json=lambda: {})


def test_a_lost_race_repeats_the_conditional_create():
    fhir = RacingFHIR(losses=1)
    result = ensure_central_patient(fhir, NoSubject(), "site1", "ehr-1")
    assert result["fhir_patient_id"] == "p-1"
    assert len(fhir.calls) == 2 and fhir.calls[0] == fhir.calls[1]


def test_a_persistent_conflict_is_not_hidden():
    with pytest.raises(PreconditionFailed):
        ensure_central_patient(RacingFHIR(losses=5), NoSubject(), "site1", "ehr-1")
