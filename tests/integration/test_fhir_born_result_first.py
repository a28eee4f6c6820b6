"""A lab result posted centrally before the report that names it (issue 21), through the engine on the real
servers: the result reaches each site as a record of its own; when the report arrives, its composition holds
the result and the result's own composition is deleted at the site, so each site holds the result once, in
its report, with nothing unaccounted for and the audit chain intact."""
from __future__ import annotations

from datetime import timedelta

import pytest

from audit.verify import verify_all
from sync.clients.errors import NotFound
from sync.clients.openehr import OpenEHRClient
from sync.detection import poll_central, poll_site
from sync.mapping import rmpath
from sync.models import ChangeEvent, Cursor, DeadLetter, RecordLink, SyncRun
from sync.workflow.reconcile import reconcile_site
from tests.integration.test_treatment_plan_flows_back import _now, drive, patient, sites  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ANALYTE = "openEHR-EHR-CLUSTER.laboratory_test_analyte.v1"
LAB = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}


def haemoglobin(pid: str) -> dict:
    return {"resourceType": "Observation", "status": "final", "category": [LAB],
            "code": {"coding": [{"system": "http://loinc.org", "code": "718-7",
                                 "display": "Hemoglobin [Mass/volume] in Blood"}]},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": "2026-11-30T08:15:00+01:00",
            "valueQuantity": {"value": 13.1, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"},
            "referenceRange": [{"low": {"value": 12, "unit": "g/dL", "system": "http://unitsofmeasure.org",
                                        "code": "g/dL"},
                                "high": {"value": 16, "unit": "g/dL", "system": "http://unitsofmeasure.org",
                                         "code": "g/dL"}, "text": "adult women"}]}


def report(pid: str, oid: str) -> dict:
    return {"resourceType": "DiagnosticReport", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "11502-2", "display": "Laboratory report"}]},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": "2026-11-30T08:15:00+01:00",
            "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                 "code": "FILL"}]}, "system": "urn:example:lis", "value": "B-2611"}],
            "result": [{"reference": f"Observation/{oid}"}]}


def _central_runs(ids: set[str]) -> list[SyncRun]:
    runs = [r for r in drive() if r.change_event.source_object_id in ids]
    assert {r.status for r in runs} == {SyncRun.Status.DONE}, [
        (d.step, d.error, {k: v for k, v in d.detail.get("error_detail", {}).items() if k not in ("mapped", "source")})
        for d in DeadLetter.objects.all()]
    return runs


def test_a_result_posted_before_its_report_is_held_once_at_each_site_in_the_reports_record(
        sites, patient, fhir, ehrbase_urls):
    pid, ehrs = patient
    started = _now()
    Cursor.objects.update_or_create(source="central", defaults={"position": started - timedelta(seconds=2)})
    oid = fhir.create(haemoglobin(pid)).resource["id"]
    poll_central()
    _central_runs({f"Observation/{oid}"})
    alone = {link.site.name: link for link in RecordLink.objects.filter(patient_link__fhir_patient_id=pid)}
    assert sorted(alone) == ["site1", "site2"]

    rid = fhir.create(report(pid, oid)).resource["id"]
    poll_central()
    _central_runs({f"DiagnosticReport/{rid}"})

    for site, url in zip(sites, ehrbase_urls):
        [live] = RecordLink.objects.filter(patient_link__fhir_patient_id=pid, site=site, deleted=False)
        assert {(r["type"], r["id"]) for r in live.fhir_resources} == {("DiagnosticReport", rid), ("Observation", oid)}
        retired = RecordLink.objects.get(pk=alone[site.name].pk)
        assert retired.deleted
        with OpenEHRClient(url) as client:
            with pytest.raises(NotFound):  # the result's own composition is deleted (204)
                client.get_composition(ehrs[site.name], alone[site.name].versioned_object_uid)
            history = client.revision_history(ehrs[site.name], alone[site.name].versioned_object_uid)
            assert (history[-1].change_type or "").lower() == "deleted"
            assert history[-1].version_uid == retired.openehr_version_uid
            comp = client.get_composition(ehrs[site.name], live.openehr_version_uid).content
        analytes = [n for _, n in rmpath.walk(comp) if n.get("archetype_node_id") == ANALYTE]
        assert len(analytes) == 1  # held once, in the report

    # the deletions and the report's composition come back as the engine's own writes: echoes, not site changes
    for site in sites:
        poll_site(site)
    assert drive(ehrs) == []
    assert {e.status for e in ChangeEvent.objects.filter(ehr_id__in=list(ehrs.values()))} == {"echo"}
    # the centre is untouched: one Observation, the report naming it
    assert [r["id"] for r in fhir.search("Observation", {"subject": f"Patient/{pid}"})] == [oid]
    assert fhir.read("Observation", oid)["meta"]["versionId"] == "1"

    # a result added to the report later arrives with the report's new version (alone it goes nowhere)
    added = fhir.create({**haemoglobin(pid), "code": {"coding": [{"system": "http://loinc.org", "code": "20570-8",
                                                                    "display": "Hematocrit"}]},
                         "valueQuantity": {"value": 39, "unit": "%", "system": "http://unitsofmeasure.org",
                                           "code": "%"}}).resource["id"]
    doc = fhir.read("DiagnosticReport", rid)
    fhir.update({**doc, "result": [*doc["result"], {"reference": f"Observation/{added}"}]})
    poll_central()
    _central_runs({f"Observation/{added}", f"DiagnosticReport/{rid}"})
    for site, url in zip(sites, ehrbase_urls):
        [live] = RecordLink.objects.filter(patient_link__fhir_patient_id=pid, site=site, deleted=False)
        assert ("Observation", added) in {(r["type"], r["id"]) for r in live.fhir_resources}
        with OpenEHRClient(url) as client:
            comp = client.get_composition(ehrs[site.name], live.openehr_version_uid).content
        assert len([n for _, n in rmpath.walk(comp) if n.get("archetype_node_id") == ANALYTE]) == 2
    for site in sites:
        poll_site(site)
    assert drive(ehrs) == []

    for site in sites:
        rec = reconcile_site(site, started - timedelta(seconds=1), _now(), ehr_id=ehrs[site.name])
        assert rec.unaccounted == [], (site.name, dict(rec.by_state))
    assert [r.broken for r in verify_all() if r.broken] == []
