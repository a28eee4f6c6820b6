"""A central lab report goes to the site as one record: the report with its results and specimen, mapped
together; a result of a report is no record of its own (issue 21).  The real servers: test_fhir_born_engine."""
from types import SimpleNamespace

from sync.models import DeadLetter, PatientLink, RecordLink, Site, SyncRun

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
