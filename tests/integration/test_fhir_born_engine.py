"""Issue 21's done-when, through the engine on the real servers: an external lab's report reaches the site
as one record and a site edit of it comes back to the centre's own resources.

The MII KDS lab report (a DiagnosticReport with five results carrying reference ranges, a Specimen, the
lab as performer) is posted to HAPI in one transaction for a patient with an EHR at site1 and site2.  The
central poll and each run's steps are driven here (as test_treatment_plan_flows_back does); HAPI, both
EHRbases and the audit chain are real.
"""
from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest

from audit.verify import verify_all
from sync.clients.openehr import OpenEHRClient
from sync.detection import poll_central, poll_site
from sync.mapping import feeder, rmpath
from sync.models import ChangeEvent, Cursor, DeadLetter, RecordLink, SyncRun
from sync.workflow.reconcile import reconcile_site
from tests.fixtures import CORPUS_DIR
from tests.integration.test_treatment_plan_flows_back import _now, drive, patient, sites  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LAB = CORPUS_DIR / "fhir" / "kds_lab_report.patient1.bundle.json"
# the KDS analyte whose result is only a data-absent reason: the template's result element needs a value
NO_VALUE = "mii-exa-test-data-patient-1-labobs-6"
LAB_ENTRY = "openEHR-EHR-OBSERVATION.laboratory_test_result.v1"
ANALYTE = "openEHR-EHR-CLUSTER.laboratory_test_analyte.v1"


def lab_transaction(pid: str) -> dict:
    """The KDS lab bundle for ``pid`` as a transaction of creates (the centre assigns the ids): the
    example's Encounter and the value-less analyte left out."""
    resources = [e["resource"] for e in json.loads(LAB.read_text())["entry"]
                 if e["resource"]["id"] != NO_VALUE and e["resource"]["resourceType"] != "Encounter"]
    urns = {f'{r["resourceType"]}/{r["id"]}': f"urn:uuid:{uuid.uuid4()}" for r in resources}
    text = json.dumps(resources)
    for ref, urn in urns.items():
        text = text.replace(f'"{ref}"', f'"{urn}"')
    entries = []
    for r in json.loads(text):
        urn = urns[f'{r["resourceType"]}/{r.pop("id")}']
        r.pop("encounter", None)
        if "subject" in r:
            r["subject"] = {"reference": f"Patient/{pid}"}
        if r["resourceType"] == "DiagnosticReport":
            r["result"] = [x for x in r["result"] if x["reference"] in urns.values()]
        entries.append({"fullUrl": urn, "resource": r, "request": {"method": "POST", "url": r["resourceType"]}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _created(answer) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in answer.entries:
        out.setdefault(e.resource_type, []).append(e.id)
    return out


def test_an_external_lab_report_reaches_the_site_as_one_record_and_a_site_edit_updates_the_centres_resources(
        sites, patient, fhir, ehrbase_urls):
    pid, ehrs = patient
    started = _now()
    Cursor.objects.update_or_create(source="central", defaults={"position": started - timedelta(seconds=2)})
    ids = _created(fhir.transaction(lab_transaction(pid), representation=True))
    [report_id], [specimen_id] = ids["DiagnosticReport"], ids["Specimen"]
    sent = {oid: fhir.read("Observation", oid) for oid in ids["Observation"]}
    poll_central()
    mine = {f"{t}/{i}" for t, xs in ids.items() for i in xs}
    runs = [r for r in drive() if r.change_event.source_object_id in mine]
    assert {r.status for r in runs} == {SyncRun.Status.DONE}, [d["path"] for d in DeadLetter.objects.values("path")]

    # one record per site: the report with its five results and specimen, the results no records of their own
    links = list(RecordLink.objects.filter(patient_link__fhir_patient_id=pid))
    assert sorted(link.site.name for link in links) == ["site1", "site2"]
    for link in links:
        assert {(r["type"], r["id"]) for r in link.fhir_resources} == {
            ("DiagnosticReport", report_id), ("Specimen", specimen_id), *(("Observation", o) for o in sent)}
    link = next(x for x in links if x.site.name == "site1")
    with OpenEHRClient(ehrbase_urls[0]) as client:
        comp = client.get_composition(ehrs["site1"], link.openehr_version_uid).content
    [entry] = [e for _, e in rmpath.entries(comp)]
    assert entry["archetype_node_id"] == LAB_ENTRY
    assert len([n for _, n in rmpath.walk(entry) if n.get("archetype_node_id") == ANALYTE]) == len(sent) == 5
    # the template has no CLUSTER.specimen: the Specimen is kept whole in the entry's feeder audit
    assert [k.resource["id"] for k in feeder.kept(entry) if k.resource["resourceType"] == "Specimen"] == [specimen_id]
    for site in sites:  # the engine's own writes come back as echoes, not runs
        poll_site(site)
    assert drive(ehrs) == []
    assert {e.status for e in ChangeEvent.objects.filter(ehr_id__in=list(ehrs.values()))} == {"echo"}

    # a clinician at site1 corrects one analyte's value
    with OpenEHRClient(ehrbase_urls[0]) as client:
        analyte = next(n for _, n in rmpath.walk(comp) if n.get("archetype_node_id") == ANALYTE)
        result = next(i for i in analyte["items"] if i["archetype_node_id"] == "at0001")
        new_value = result["value"]["magnitude"] + 1.25
        result["value"]["magnitude"] = new_value
        code = next(i for i in analyte["items"] if i["archetype_node_id"] == "at0024")["value"]["defining_code"]["code_string"]
        client.update_composition(ehrs["site1"], link.openehr_version_uid, comp)
    poll_site(link.site)
    back = drive(ehrs)
    assert [r.status for r in back] == [SyncRun.Status.DONE], [d["path"] for d in DeadLetter.objects.values("path")]

    # the centre's own resources were updated (If-Match on their versions), none twinned
    edited = next(o for o in sent.values() if any(c["code"] == code for c in o["code"]["coding"]))
    now = fhir.read("Observation", edited["id"])
    assert now["valueQuantity"]["value"] == new_value != edited["valueQuantity"]["value"]
    assert int(now["meta"]["versionId"]) > int(edited["meta"]["versionId"])
    assert now["referenceRange"] == edited["referenceRange"]  # low/high, type, age, appliesTo intact
    assert now["specimen"] == {"reference": f"Specimen/{specimen_id}"}
    for oid, before in sent.items():
        if oid != edited["id"]:
            after = fhir.read("Observation", oid)
            assert (after["valueQuantity"], after["referenceRange"]) == (before["valueQuantity"], before["referenceRange"])
    subject = {"subject": f"Patient/{pid}"}
    assert sorted(r["id"] for r in fhir.search("Observation", subject)) == sorted(sent)
    assert [r["id"] for r in fhir.search("Specimen", subject)] == [specimen_id]
    report = fhir.read("DiagnosticReport", report_id)
    assert report["specimen"] == [{"reference": f"Specimen/{specimen_id}"}]
    assert sorted(x["reference"] for x in report["result"]) == sorted(f"Observation/{o}" for o in sent)
    assert report["performer"] and all(p["reference"].startswith("Organization/") for p in report["performer"])

    # the centre's new versions reach site2 (site1 holds them already); everything accounted for
    poll_central()
    later = drive(ehrs)
    assert {r.status for r in later} <= {SyncRun.Status.DONE}, [d["path"] for d in DeadLetter.objects.values("path")]
    for site in sites:
        poll_site(site)
    drive(ehrs)
    for site in sites:
        report_ = reconcile_site(site, started - timedelta(seconds=1), _now(), ehr_id=ehrs[site.name])
        assert report_.unaccounted == [], (site.name, dict(report_.by_state))
    assert [r.broken for r in verify_all() if r.broken] == []
