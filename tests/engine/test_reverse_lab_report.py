"""A central lab report goes to the site as one record: the report with its results and specimen, mapped
together; a result of a report is no record of its own (issue 21).  The real servers: test_fhir_born_engine."""
from types import SimpleNamespace

import pytest

from audit.models import AuditEvent
from sync.identity import composition_uid_for
from sync.models import DeadLetter, EngineWrite, PatientLink, RecordLink, Site, SyncRun

from .test_reverse import central_change, linked  # noqa: F401 - the fixture is used by name


def lab_report(engine) -> dict[str, str]:
    """A report with two results and a Specimen made at the centre (the fake server), ids by role."""
    subject = {"reference": f"Patient/{PatientLink.objects.get().fhir_patient_id}"}
    specimen = engine.fhir.create({"resourceType": "Specimen", "subject": subject, "type": {"text": "Venous blood"}})
    results = [engine.fhir.create({"resourceType": "Observation", "status": "final", "code": {"text": code},
                                   "subject": subject, "valueQuantity": {"value": value, "unit": "g/dL"},
                                   "specimen": {"reference": f"Specimen/{specimen.id}"}})
               for code, value in (("Haemoglobin", 13.1), ("Albumin", 4.2))]
    report = engine.fhir.create({"resourceType": "DiagnosticReport", "status": "final", "subject": subject,
                                 "code": {"text": "Laboratory report"},
                                 "result": [{"reference": f"Observation/{r.id}"} for r in results]})
    return {"report": report.id, "specimen": specimen.id, "hb": results[0].id, "alb": results[1].id}


def mapped_with(engine) -> list[list[str]]:
    """Record the resources each reverse mapping is given (the fake builds its composition from a value)."""
    calls, fake = [], engine.services.mapping.from_fhir

    def from_fhir(resources, **kw):
        calls.append([f"{r['resourceType']}/{r['id']}" for r in resources])
        with_value = [r for r in resources if "valueQuantity" in r]
        return fake(with_value or resources, **kw)

    engine.services.mapping = SimpleNamespace(**{**vars(engine.services.mapping), "from_fhir": from_fhir})
    return calls


def test_a_result_of_a_central_report_goes_to_no_site_alone(engine, linked):  # noqa: F811
    engine.site.template_ids = ["vitals"]
    engine.site.save()
    ids = lab_report(engine)
    records = RecordLink.objects.count()
    run = central_change(engine, f"Observation/{ids['hb']}", "1")
    assert engine.drive(run) == SyncRun.Status.DONE
    assert engine.openehr.writes == [] and RecordLink.objects.count() == records


def test_a_central_report_is_mapped_with_its_results_and_specimen_into_one_record(engine, linked):  # noqa: F811
    engine.site.template_ids = ["vitals"]
    engine.site.save()
    engine.site.fidelity_guard = Site.GuardMode.RECORD_ONLY  # the fake mapping keeps one value: not the point here
    engine.site.save()
    ids = lab_report(engine)
    calls = mapped_with(engine)
    run = central_change(engine, f"DiagnosticReport/{ids['report']}", "1")
    assert engine.drive(run) == SyncRun.Status.DONE, list(DeadLetter.objects.values("step", "cause", "rule", "path"))
    assert calls == [[f"DiagnosticReport/{ids['report']}", f"Observation/{ids['hb']}", f"Observation/{ids['alb']}",
                      f"Specimen/{ids['specimen']}"]]
    assert len(engine.openehr.writes) == 1
    [link] = RecordLink.objects.filter(fhir_resources__contains=[{"type": "DiagnosticReport", "id": ids["report"]}])
    assert [(r["type"], r["id"]) for r in link.fhir_resources] == [
        ("DiagnosticReport", ids["report"]), ("Observation", ids["hb"]), ("Observation", ids["alb"]),
        ("Specimen", ids["specimen"])]


# ------------------------------------------------- a result posted before its report
def _result_alone(engine) -> str:
    """An Observation posted centrally on its own (no report names it yet): the engine writes it to the site
    as a record of its own.  Its id."""
    subject = {"reference": f"Patient/{PatientLink.objects.get().fhir_patient_id}"}
    obs = engine.fhir.create({"resourceType": "Observation", "status": "final", "code": {"text": "Haemoglobin"},
                              "subject": subject, "valueQuantity": {"value": 13.1, "unit": "g/dL"}}).resource
    assert engine.drive(central_change(engine, f"Observation/{obs['id']}", "1")) == SyncRun.Status.DONE
    return obs["id"]


def _report_naming(engine, oid: str) -> str:
    subject = {"reference": f"Patient/{PatientLink.objects.get().fhir_patient_id}"}
    return engine.fhir.create({"resourceType": "DiagnosticReport", "status": "final", "subject": subject,
                               "code": {"text": "Laboratory report"},
                               "result": [{"reference": f"Observation/{oid}"}]}).resource["id"]


def _holding(oid: str, **kw) -> list[RecordLink]:
    return list(RecordLink.objects.filter(fhir_resources__contains=[{"type": "Observation", "id": oid}], **kw))


@pytest.fixture
def central_lab(engine, linked):  # noqa: F811
    engine.site.template_ids = ["vitals"]
    engine.site.fidelity_guard = Site.GuardMode.RECORD_ONLY  # the fake mapping keeps one value: not the point here
    engine.site.save()
    mapped_with(engine)  # the fake mapping builds its composition from the first resource with a value
    return engine


def test_a_result_posted_before_its_report_joins_the_reports_record_and_is_held_once(central_lab):
    engine = central_lab
    oid = _result_alone(engine)
    [alone] = _holding(oid)
    standalone = alone.versioned_object_uid
    assert alone.versioned_object_uid == composition_uid_for(f"Observation/{oid}", "site1")
    report = _report_naming(engine, oid)
    writes = len(engine.openehr.writes)
    run = central_change(engine, f"DiagnosticReport/{report}", "1")
    assert engine.drive(run) == SyncRun.Status.DONE, list(DeadLetter.objects.values("step", "cause", "rule", "path"))

    # the report's composition is created and the result's own one deleted (If-Match on the version written)
    created, deleted = engine.openehr.writes[writes:]
    assert created.startswith(composition_uid_for(f"DiagnosticReport/{report}", "site1"))
    assert deleted == f"{standalone}::site1::2" and engine.openehr.compositions[deleted] is None
    [live] = _holding(oid, deleted=False)
    assert {(r["type"], r["id"]) for r in live.fhir_resources} == {("DiagnosticReport", report), ("Observation", oid)}
    retired = RecordLink.objects.get(pk=alone.pk)
    assert retired.deleted and retired.openehr_version_uid == deleted
    # the deletion is the engine's own write: the site's poll sees an echo, not a site deletion to carry back
    assert EngineWrite.objects.filter(destination="site:site1", object_id=standalone, version=deleted).exists()
    [event] = AuditEvent.objects.filter(run_id=run.pk, action__endswith="write")
    assert event.detail["absorbed"] == [standalone] and event.detail["kept_edited_at_site"] == []

    # a later central version of the result goes to the report's record only
    obs = engine.fhir.read("Observation", oid)
    edited = engine.fhir.update({**obs, "valueQuantity": {"value": 12.4, "unit": "g/dL"}}).resource
    writes = len(engine.openehr.writes)
    later = central_change(engine, f"Observation/{oid}", edited["meta"]["versionId"])
    assert engine.drive(later) == SyncRun.Status.DONE
    assert [w.split("::")[0] for w in engine.openehr.writes[writes:]] == [live.versioned_object_uid]


def test_a_result_record_edited_at_the_site_before_the_report_came_is_kept(central_lab):
    engine = central_lab
    oid = _result_alone(engine)
    [alone] = _holding(oid)
    written = alone.openehr_version_uid
    content = engine.openehr.get_composition("ehr-1", written).content
    edit = engine.openehr.update_composition("ehr-1", written, {**content, "content": [
        {**content["content"][0], "value": 12.9}]})  # a clinician's correction, not synced yet
    report = _report_naming(engine, oid)
    run = central_change(engine, f"DiagnosticReport/{report}", "1")
    assert engine.drive(run) == SyncRun.Status.DONE
    assert engine.openehr.compositions[edit.version_uid] is not None  # the site's edit is not thrown away
    assert not RecordLink.objects.get(pk=alone.pk).deleted
    [event] = AuditEvent.objects.filter(run_id=run.pk, action__endswith="write")
    assert event.detail["absorbed"] == [] and event.detail["kept_edited_at_site"] == [alone.versioned_object_uid]


def test_a_sites_own_record_of_a_result_is_never_absorbed(central_lab, linked):  # noqa: F811
    """The linked fixture's Observation was born at the site: a central report naming it takes no record away."""
    engine = central_lab
    [own] = _holding(linked["id"])
    report = _report_naming(engine, linked["id"])
    writes = len(engine.openehr.writes)
    assert engine.drive(central_change(engine, f"DiagnosticReport/{report}", "1")) == SyncRun.Status.DONE
    assert all(engine.openehr.compositions[w] is not None for w in engine.openehr.writes[writes:])
    assert not RecordLink.objects.get(pk=own.pk).deleted


def test_a_result_added_to_a_synced_report_joins_its_record(central_lab):
    """Alone a report's result goes to no site: the report's new version brings it (before, it never arrived)."""
    engine = central_lab
    first = _result_alone(engine)
    report = _report_naming(engine, first)
    assert engine.drive(central_change(engine, f"DiagnosticReport/{report}", "1")) == SyncRun.Status.DONE
    [link] = _holding(first, deleted=False)
    subject = {"reference": f"Patient/{PatientLink.objects.get().fhir_patient_id}"}
    added = engine.fhir.create({"resourceType": "Observation", "status": "final", "code": {"text": "Albumin"},
                                "subject": subject, "valueQuantity": {"value": 4.2, "unit": "g/dL"}}).resource
    doc = engine.fhir.read("DiagnosticReport", report)
    doc = engine.fhir.update({**doc, "result": [*doc["result"], {"reference": f"Observation/{added['id']}"}]}).resource
    writes = len(engine.openehr.writes)
    # the result's own run comes first: it names a report now, so it goes nowhere alone
    assert engine.drive(central_change(engine, f"Observation/{added['id']}", "1")) == SyncRun.Status.DONE
    assert engine.openehr.writes[writes:] == []
    run = central_change(engine, f"DiagnosticReport/{report}", doc["meta"]["versionId"])
    assert engine.drive(run) == SyncRun.Status.DONE, list(DeadLetter.objects.values("step", "cause", "rule", "path"))
    assert [w.split("::")[0] for w in engine.openehr.writes[writes:]] == [link.versioned_object_uid]
    link.refresh_from_db()
    assert {(r["type"], r["id"]) for r in link.fhir_resources} == {
        ("DiagnosticReport", report), ("Observation", first), ("Observation", added["id"])}


def test_a_result_of_its_own_added_to_a_synced_report_is_absorbed_into_its_record(central_lab):
    engine = central_lab
    first = _result_alone(engine)
    report = _report_naming(engine, first)
    assert engine.drive(central_change(engine, f"DiagnosticReport/{report}", "1")) == SyncRun.Status.DONE
    [link] = _holding(first, deleted=False)
    later = _result_alone(engine)  # posted alone after the report: a record of its own at first
    [alone] = _holding(later)
    doc = engine.fhir.read("DiagnosticReport", report)
    doc = engine.fhir.update({**doc, "result": [*doc["result"], {"reference": f"Observation/{later}"}]}).resource
    writes = len(engine.openehr.writes)
    run = central_change(engine, f"DiagnosticReport/{report}", doc["meta"]["versionId"])
    assert engine.drive(run) == SyncRun.Status.DONE
    updated, deleted = engine.openehr.writes[writes:]
    assert updated.split("::")[0] == link.versioned_object_uid and deleted.split("::")[0] == alone.versioned_object_uid
    assert engine.openehr.compositions[deleted] is None and RecordLink.objects.get(pk=alone.pk).deleted
    assert [x.pk for x in _holding(later, deleted=False)] == [link.pk]
