"""Staging the demo's conflicts: three kinds of double edit, and waiting on the records while the
engine still has work instead of giving up after a fixed time."""
from types import SimpleNamespace

from sync.clients.openehr import VersionRef
from sync.demo import conflicts
from sync.demo.conflicts import DIASTOLIC_LOINC, KINDS, SYSTOLIC_KEY, SYSTOLIC_LOINC, make_conflicts

TEMPERATURE_KEY = "vital_signs/body_temperature:0/any_event:0/temperature|magnitude"


class FakeSite:
    def __init__(self):
        self.flat, self.updates, self.n = {}, [], 0

    def query(self, aql, params=None):
        return [{"ehr_id": "ehr-1", "subject_id": "SYN-1"}]

    def create_composition(self, ehr_id, flat, template_id=None):
        self.n += 1
        self.flat[f"vo{self.n}"] = {**flat, SYSTOLIC_KEY: 120.0, TEMPERATURE_KEY: 36.8}
        return VersionRef.parse(f"vo{self.n}::site1::1", ehr_id)

    def get_composition(self, ehr_id, uid, flat=False):
        return SimpleNamespace(content=dict(self.flat[uid]))

    def update_composition(self, ehr_id, preceding, flat, template_id=None):
        self.updates.append(flat)
        return VersionRef.parse(preceding.replace("::1", "::2"), ehr_id)


class FakeFHIR:
    """The centre: a record's Observation appears only after ``synced_after`` searches (the engine's backlog)."""

    def __init__(self, synced_after: int):
        self.searches, self.synced_after, self.updates = 0, synced_after, []

    def search(self, rtype, params):
        self.searches += 1
        if self.searches <= self.synced_after:
            return iter([])
        return iter([{"resourceType": "Observation", "id": "obs", "meta": {"versionId": "1"}, "component": [
            {"code": {"coding": [{"code": SYSTOLIC_LOINC}]}, "valueQuantity": {"value": 120.0}},
            {"code": {"coding": [{"code": DIASTOLIC_LOINC}]}, "valueQuantity": {"value": 80.0}}]}])

    def update(self, resource, if_match_version=None):
        self.updates.append(resource)


def _values(resource):
    return {c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"] for c in resource["component"]}


def test_three_kinds_of_double_edit(monkeypatch):
    monkeypatch.setattr(conflicts, "vital_signs_composition", lambda rng, when: {})
    site, fhir = FakeSite(), FakeFHIR(synced_after=0)
    attempts = make_conflicts(fhir, {"site1": site}, 3, poll_s=0)
    assert [a.kind for a in attempts] == list(KINDS) and {a.status for a in attempts} == {"staged"}
    same, fields, entries = zip(fhir.updates, site.updates)
    assert _values(same[0])[SYSTOLIC_LOINC] != 120 and same[1][SYSTOLIC_KEY] != 120  # one field, both sides
    assert _values(fields[0])[DIASTOLIC_LOINC] != 80 and _values(fields[0])[SYSTOLIC_LOINC] == 120
    assert fields[1][SYSTOLIC_KEY] != 120  # the diastolic centrally, the systolic at the site
    assert _values(entries[0])[SYSTOLIC_LOINC] != 120
    assert entries[1][TEMPERATURE_KEY] != 36.8 and entries[1][SYSTOLIC_KEY] == 120  # another entry at the site


def test_it_waits_on_the_records_while_the_engine_works_through_a_backlog(monkeypatch):
    monkeypatch.setattr(conflicts, "vital_signs_composition", lambda rng, when: {})
    busy = iter([True] * 50)
    site, fhir = FakeSite(), FakeFHIR(synced_after=40)  # far more polls than idle_s would allow alone
    attempts = make_conflicts(fhir, {"site1": site}, 1, poll_s=0.01, idle_s=0.05,
                              engine_busy=lambda: next(busy, False))
    assert attempts[0].status == "staged"


def test_an_idle_engine_that_never_syncs_the_record_ends_the_attempt(monkeypatch):
    monkeypatch.setattr(conflicts, "vital_signs_composition", lambda rng, when: {})
    attempts = make_conflicts(FakeFHIR(synced_after=10**6), {"site1": FakeSite()}, 1, poll_s=0.01, idle_s=0.05)
    assert attempts[0].status == "not_synced"
