"""GET /api/v1/sources/{type}/{id}/: the composition version a resource's engine Provenance names, read live.

The central server and the site are fakes (``use_services``); rows, the audit
chain and the role table are real. ``FakeSources`` is shared with the desk's tests.
"""
from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest

from audit.chain import payload_hash
from audit.models import AuditEvent
from audit.record import record_event, system_actor
from sync.clients.errors import NotFound, TransientError
from sync.clients.openehr import Composition, VersionRef
from sync.identity import provenance_id, record_key
from sync.mapping.provenance import build_provenance
from sync.models import PatientLink, RecordLink
from sync.workflow.services import Services, SiteConfigError, use_services
from tests.desk import factories as f

EHR = f.EHR_ID
VO = "0b5c1f0e-9a7d-4c3e-8f21-5d6e7a8b9c0d"
OBS = "Observation/obs-1"


def vuid(n: int) -> str:
    return f"{VO}::site1.conflictdesk.local::{n}"


def canonical(n: int) -> dict:
    comp = f.set_temperature(f.composition(), 0, 36.0 + n)
    comp["uid"]["value"] = vuid(n)
    return comp


def flat(n: int) -> dict:
    return {"encounter/_uid": vuid(n), "encounter/body_temperature:0/any_event:0/temperature|magnitude": 36.0 + n}


def engine_provenance(version_uid: str, targets=(OBS,), *, site="site1", ehr=EHR, at="2026-11-20T10:00:00.000+00:00"):
    """A Provenance as the engine's transaction leaves it on HAPI."""
    resources = [{"resourceType": t.split("/")[0], "id": t.split("/")[1]} for t in targets]
    body = build_provenance(resources, site, ehr, version_uid)
    body["id"] = provenance_id(version_uid)
    body["meta"] = {"versionId": "1", "lastUpdated": at}
    return body


class FakeFHIR:
    def __init__(self):
        self.provenances: list[dict] = []
        self.down = False
        self.searches = []

    def search(self, resource_type, params):
        self.searches.append((resource_type, dict(params)))
        if self.down:
            raise TransientError(method="GET", path=resource_type, reason="connection refused")
        found = [p for p in self.provenances if params["target"] in {t["reference"] for t in p["target"]}]
        return iter(sorted(found, key=lambda p: p["meta"]["lastUpdated"], reverse=True))


class FakeOpenEHR:
    def __init__(self):
        self.versions: dict[str, tuple[dict, dict]] = {}
        self.down = False
        self.calls = []

    def get_composition(self, ehr_id, uid, *, flat=False):
        self.calls.append((ehr_id, uid, flat))
        if self.down:
            raise TransientError(method="GET", path=f"ehr/{ehr_id}/composition/{uid}", reason="timed out")
        if uid not in self.versions:
            raise NotFound(method="GET", path=f"ehr/{ehr_id}/composition/{uid}", status=204, reason="deleted")
        canonical_body, flat_body = self.versions[uid]
        return Composition(ref=VersionRef.parse(uid, ehr_id), content=copy.deepcopy(flat_body if flat else canonical_body))


class FakeSources(SimpleNamespace):
    """Site1 with one synced record (versions 1 and 2, Observation/obs-1), both servers faked."""

    def synced(self, n: int, *, at: str, audited: bool = True) -> None:
        self.openehr.versions[vuid(n)] = (canonical(n), flat(n))
        self.fhir.provenances.append(engine_provenance(vuid(n), at=at))
        if not audited:
            return
        # What the engine's detect step records: the hash of the canonical composition it read.
        record_event(action="sync.detect", outcome="ok", actor=system_actor(), partition="site:site1",
                     source="site:site1", source_object=VO, source_version=vuid(n),
                     record_key=record_key("site1", VO), source_hash=payload_hash(canonical(n)))


@pytest.fixture
def sources(db):
    site = f.make_site("site1")
    patient, _ = PatientLink.objects.get_or_create(site=site, ehr_id=EHR, defaults={"fhir_patient_id": "p-100"})
    link = RecordLink.objects.create(site=site, patient_link=patient, versioned_object_uid=VO, openehr_version_uid=vuid(2),
                                     fhir_resources=[{"key": "k", "type": "Observation", "id": "obs-1", "version": "2"}],
                                     canonical_hash="c" * 64)
    fake = FakeSources(site=site, link=link, fhir=FakeFHIR(), openehr=FakeOpenEHR())
    fake.synced(1, at="2026-11-20T10:00:00.000+00:00")
    fake.synced(2, at="2026-11-20T10:00:00.250+00:00")
    services = Services(fhir=fake.fhir, openehr=lambda s: fake.openehr, mapping=None,
                        audit=SimpleNamespace(record_event=record_event, payload_hash=payload_hash, system_actor=system_actor))
    with use_services(services):
        yield fake


URL = "/api/v1/sources/Observation/obs-1/"


def viewed(**filters):
    return AuditEvent.objects.filter(action="source.viewed", **filters)


def test_it_returns_the_exact_version_the_newest_provenance_names(api, people, sources):
    response = api(people.clinician).get(URL)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["version_uid"] == vuid(2) and body["composition"] == canonical(2)
    assert body["provenance"] == f"Provenance/{provenance_id(vuid(2))}" and body["via"] == "provenance"
    assert (body["site"], body["ehr_id"], body["format"]) == ("site1", EHR, "canonical")
    assert body["hash"] == payload_hash(canonical(2)) == body["last_synced_hash"]
    assert body["matches_last_synced"] is True and body["last_synced_hash_of"] == "composition"
    assert sources.openehr.calls == [(EHR, vuid(2), False)]  # that version, not the latest
    assert sources.fhir.searches[0] == ("Provenance", {"target": OBS, "_sort": "-_lastUpdated", "_count": "20"})


def test_it_returns_flat_on_request(api, people, sources):
    body = api(people.steward).get(URL + "?format=flat").json()
    assert body["format"] == "flat" and body["composition"] == flat(2)
    assert sources.openehr.calls == [(EHR, vuid(2), True)]
    assert body["hash"] == payload_hash(flat(2)) and body["matches_last_synced"] is None


def test_it_reports_when_the_site_now_differs_from_what_was_synced(api, people, sources):
    changed = canonical(2)
    changed["composer"] = {"_type": "PARTY_IDENTIFIED", "name": "someone else"}
    sources.openehr.versions[vuid(2)] = (changed, flat(2))
    body = api(people.auditor).get(URL).json()
    assert body["matches_last_synced"] is False and body["last_synced_hash"] == payload_hash(canonical(2))


def test_it_answers_404_without_an_engine_provenance(api, people, sources):
    response = api(people.clinician).get("/api/v1/sources/Observation/never-synced/")
    assert response.status_code == 404 and "no Provenance" in response.json()["detail"]
    assert sources.openehr.calls == []
    assert viewed(outcome="not_found", destination_object="Observation/never-synced").count() == 1


@pytest.mark.parametrize("tamper", ["foreign_agent", "id_not_derived", "unknown_site", "path_in_entity"])
def test_it_follows_only_the_engines_provenance_to_a_known_site(api, people, sources, tamper):
    sources.fhir.provenances.clear()
    forged = engine_provenance(vuid(3), at="2026-11-21T00:00:00.000+00:00")
    if tamper == "foreign_agent":
        forged["agent"][0]["who"] = {"reference": "Device/somebody-else"}
    elif tamper == "id_not_derived":
        forged["id"] = "made-up"
    elif tamper == "unknown_site":
        forged = engine_provenance(vuid(3), site="evil")
        forged["meta"]["lastUpdated"] = "2026-11-21T00:00:00.000+00:00"
    else:
        forged["entity"][0]["what"]["identifier"]["value"] = f"site1/ehr/../../admin/composition/{vuid(3)}"
    sources.fhir.provenances.append(forged)
    assert api(people.clinician).get(URL).status_code == 404
    assert sources.openehr.calls == []


def test_a_site_down_is_503_with_the_last_synced_hash(api, people, sources):
    sources.openehr.down = True
    response = api(people.clinician).get(URL)
    assert response.status_code == 503
    body = response.json()
    assert "site1 is unreachable" in body["detail"] and body["version_uid"] == vuid(2)
    assert body["last_synced_hash"] == payload_hash(canonical(2)) and body["last_synced_hash_of"] == "composition"
    event = viewed().get()
    assert event.outcome == "unavailable" and event.source_version == vuid(2)
    assert event.detail["last_synced_hash"] == payload_hash(canonical(2))


def test_without_an_audited_read_the_record_links_content_hash_is_the_last_synced_hash(api, people, sources):
    sources.synced(3, at="2026-11-20T11:00:00.000+00:00", audited=False)  # e.g. synced before source_hash existed
    RecordLink.objects.filter(pk=sources.link.pk).update(openehr_version_uid=vuid(3))
    sources.openehr.down = True
    body = api(people.clinician).get(URL).json()
    assert (body["last_synced_hash"], body["last_synced_hash_of"]) == ("c" * 64, "clinical_content")


def test_a_site_without_credentials_is_503_too(api, people, sources, monkeypatch):
    def refuse(site):
        raise SiteConfigError("site site1: $SITE1_AUTH is unset")

    with use_services(Services(fhir=sources.fhir, openehr=refuse, mapping=None,
                               audit=SimpleNamespace(payload_hash=payload_hash))):
        response = api(people.clinician).get(URL)
    assert response.status_code == 503 and response.json()["last_synced_hash"]


def test_a_version_the_site_no_longer_has_is_410(api, people, sources):
    del sources.openehr.versions[vuid(2)]
    response = api(people.clinician).get(URL)
    assert response.status_code == 410 and response.json()["last_synced_hash"] == payload_hash(canonical(2))
    assert viewed(outcome="gone").count() == 1


def test_with_the_central_server_down_the_record_link_locates_the_version(api, people, sources):
    sources.fhir.down = True
    body = api(people.clinician).get(URL).json()
    assert (body["via"], body["provenance"], body["version_uid"]) == ("record_link", "", vuid(2))
    assert body["composition"] == canonical(2)


def test_the_central_server_down_and_no_record_link_is_503(api, people, sources):
    sources.fhir.down = True
    response = api(people.clinician).get("/api/v1/sources/Observation/unknown/")
    assert response.status_code == 503 and response.json()["last_synced_hash"] == ""


@pytest.mark.parametrize("url", ["/api/v1/sources/Observation/obs-1/?format=xml",
                                 "/api/v1/sources/observation/obs-1/",
                                 "/api/v1/sources/Observation/a%20b/"])
def test_it_refuses_a_bad_format_or_reference(api, people, sources, url):
    assert api(people.clinician).get(url).status_code == 400
    assert sources.fhir.searches == []
    assert viewed(outcome="invalid").count() == 1


@pytest.mark.parametrize("role,allowed", [("clinician", True), ("steward", True), ("auditor", True),
                                          ("admin", False), ("norole", False)])
def test_it_is_allowed_to_exactly_the_view_conflicts_roles(api, people, sources, role, allowed):
    user = getattr(people, role)
    response = api(user).get(URL)
    if allowed:
        assert response.status_code == 200
        assert viewed(actor=user.email).count() == 1
    else:
        assert response.status_code == 403 and "view_conflicts" in response.json()["detail"]
        assert AuditEvent.objects.filter(action="desk.refused", actor=user.email).count() == 1
        assert not viewed().exists() and sources.openehr.calls == []


def test_anonymous_gets_401(api, sources):
    assert api().get(URL).status_code == 401


def test_it_audits_who_asked_for_which_source_with_ids_and_hashes_only(api, people, sources):
    api(people.clinician).get(URL + "?format=flat")
    event = viewed().get()
    assert (event.actor, event.actor_kind, event.outcome, event.partition) == ("clara@desk.test", "user", "ok", "desk")
    assert (event.source, event.source_object, event.source_version) == ("site:site1", VO, vuid(2))
    assert (event.destination, event.destination_object) == ("central", OBS)
    assert event.record_key == record_key("site1", VO) and event.patient_link_id == sources.link.patient_link_id
    assert event.source_hash == payload_hash(flat(2))
    assert event.detail == {"format": "flat", "site_id": sources.site.pk, "via": "provenance",
                            "provenance": f"Provenance/{provenance_id(vuid(2))}",
                            "last_synced_hash": payload_hash(canonical(2))}
    assert "36" not in str(event.detail) and "temperature" not in str(event.__dict__)
