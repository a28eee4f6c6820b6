"""Who changed a central resource and when (sync.workflow.central_author): the version's meta.lastUpdated,
and the person of a Provenance tied to that version by when it was stored; the engine's own never."""
from datetime import datetime, timezone

import pytest

from sync.clients.errors import InvalidRequest, NotFound, TransientError
from sync.mapping.provenance import ENGINE_DEVICE
from sync.workflow.central_author import central_change

CHANGED_AT = "2026-11-20T10:42:00.000+00:00"
AT = datetime(2026, 11, 20, 10, 42, tzinfo=timezone.utc)


class Server:
    """The reads central_change makes: Provenance by target, a vread of the next version, a person read."""

    def __init__(self, provenances=(), versions=None, people=None, fail=None):
        self.provenances, self.versions, self.people, self.fail = list(provenances), versions or {}, people or {}, fail
        self.asked = []

    def search(self, rtype, params):
        self.asked.append((rtype, params))
        if self.fail:
            raise self.fail
        assert rtype == "Provenance"
        return iter([p for p in self.provenances
                     if params["target"] in {t["reference"].split("/_history/")[0] for t in p["target"]}])

    def vread(self, rtype, rid, vid):
        if (rtype, rid, vid) not in self.versions:
            raise NotFound(method="GET", path=f"/{rtype}/{rid}/_history/{vid}", status=404)
        return self.versions[(rtype, rid, vid)]

    def read(self, rtype, rid):
        if (rtype, rid) not in self.people:
            raise NotFound(method="GET", path=f"/{rtype}/{rid}", status=404)
        return self.people[(rtype, rid)]


def changed(version="3", last_updated=CHANGED_AT):
    return {"resourceType": "Observation", "id": "o1", "meta": {"versionId": version, "lastUpdated": last_updated}}


def provenance(stored, *agents, recorded=None, target="Observation/o1"):
    p = {"resourceType": "Provenance", "id": f"pv-{stored}", "meta": {"lastUpdated": stored},
         "target": [{"reference": target}], "agent": [{"who": who} for who in agents]}
    if recorded:
        p["recorded"] = recorded
    return p


DR_X = {"reference": "Practitioner/p1", "display": "Dr. X"}


def test_the_commit_time_is_the_versions_last_updated_and_the_author_its_provenance_person():
    server = Server([provenance("2026-11-20T10:42:00.000+00:00", {"reference": "Device/ehr", "display": "EHR"}, DR_X)])
    assert central_change(server, changed()) == {"fhir_changed_at": AT, "fhir_changed_by": "Dr. X"}


def test_without_a_provenance_only_the_time_is_known():
    assert central_change(Server(), changed()) == {"fhir_changed_at": AT}


def test_nothing_is_known_of_a_resource_without_last_updated():
    server = Server([provenance(CHANGED_AT, DR_X)])
    assert central_change(server, {"resourceType": "Observation", "id": "o1", "meta": {"versionId": "3"}}) == {}
    assert server.asked == []


def test_the_engines_own_provenance_names_no_central_author():
    server = Server([provenance(CHANGED_AT, {"reference": ENGINE_DEVICE, "display": "ConflictDesk"},
                                {"reference": "Practitioner/site-doc", "display": "Dr. Site"})])
    assert "fhir_changed_by" not in central_change(server, changed())


def test_a_provenance_of_an_earlier_or_a_later_version_is_not_this_versions():
    earlier = provenance("2026-11-20T09:00:00+00:00", {"reference": "Practitioner/a", "display": "Dr. Earlier"})
    later = provenance("2026-11-20T11:00:00+00:00", {"reference": "Practitioner/b", "display": "Dr. Later"})
    next_version = {("Observation", "o1", "4"): changed("4", "2026-11-20T10:50:00+00:00")}
    assert "fhir_changed_by" not in central_change(Server([earlier, later], next_version), changed())
    # Without a version 4, the later one is this version's (stored after it, none between).
    assert central_change(Server([earlier, later]), changed())["fhir_changed_by"] == "Dr. Later"


def test_a_provenance_posted_late_for_an_activity_before_the_version_is_not_taken():
    late = provenance("2026-11-20T10:43:00+00:00", DR_X, recorded="2026-11-20T08:00:00+00:00")
    assert "fhir_changed_by" not in central_change(Server([late]), changed())
    on_time = provenance("2026-11-20T10:43:00+00:00", DR_X, recorded="2026-11-20T10:41:30+00:00")  # clock skew
    assert central_change(Server([on_time]), changed())["fhir_changed_by"] == "Dr. X"


def test_the_provenance_stored_closest_to_the_change_names_the_author():
    first = provenance("2026-11-20T10:42:01+00:00", {"reference": "Practitioner/a", "display": "Dr. First"})
    second = provenance("2026-11-20T10:45:00+00:00", {"reference": "Practitioner/b", "display": "Dr. Second"})
    assert central_change(Server([second, first]), changed())["fhir_changed_by"] == "Dr. First"


def test_a_person_referenced_without_a_display_is_read_for_the_name():
    people = {("Practitioner", "p7"): {"resourceType": "Practitioner", "name": [
                  {"use": "old", "family": "Maiden"}, {"use": "official", "prefix": ["Dr."], "given": ["Ada"],
                                                       "family": "Central"}]},
              ("PractitionerRole", "r1"): {"resourceType": "PractitionerRole",
                                           "practitioner": {"reference": "Practitioner/p7"}}}
    for who in ({"reference": "Practitioner/p7"}, {"reference": "PractitionerRole/r1"}):
        assert central_change(Server([provenance(CHANGED_AT, who)], people=people),
                              changed())["fhir_changed_by"] == "Dr. Ada Central"
    # A reference the server does not resolve names nobody; a device is no person.
    assert "fhir_changed_by" not in central_change(Server([provenance(CHANGED_AT, {"reference": "Practitioner/gone"},
                                                                      {"reference": "Device/d1", "display": "LIS"})]),
                                                   changed())


def test_a_refused_search_leaves_the_name_out_and_a_server_that_does_not_answer_retries_the_step():
    refused = Server(fail=InvalidRequest(method="GET", path="/Provenance", status=400))
    assert central_change(refused, changed()) == {"fhir_changed_at": AT}
    with pytest.raises(TransientError):
        central_change(Server(fail=TransientError(method="GET", path="/Provenance", status=503)), changed())
