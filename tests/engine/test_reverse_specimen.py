"""Central Specimens flow back only as part of a synced record: one born centrally alone is no entry of
its own (it is the specimen cluster of a lab result), so it goes to no site; the flow-back types name it."""
from django.conf import settings as django_settings

from sync.models import ChangeEvent, Direction, PatientLink, RecordLink, SyncRun

from .test_reverse import central_change, linked  # noqa: F401 - the fixture is used by name


def test_specimen_changes_are_read_from_the_central_server():
    assert "Specimen" in django_settings.CONFLICTDESK_FLOWBACK_TYPES


def test_a_specimen_born_centrally_goes_to_no_site(engine, linked):  # noqa: F811
    engine.site.template_ids = ["vitals"]
    engine.site.save()
    patient = PatientLink.objects.get().fhir_patient_id
    specimen = engine.fhir.create({"resourceType": "Specimen", "subject": {"reference": f"Patient/{patient}"},
                                   "type": {"text": "Venous blood"}}).resource
    links = RecordLink.objects.count()
    run = central_change(engine, f"Specimen/{specimen['id']}", "1")
    assert engine.drive(run) == SyncRun.Status.DONE
    assert engine.openehr.writes == [] and RecordLink.objects.count() == links
    assert ChangeEvent.objects.get(pk=run.change_event_id).direction == Direction.TO_OPENEHR


def test_an_observation_born_centrally_still_goes_to_the_sites_of_its_patient(engine, linked):  # noqa: F811
    """The control: only the Specimen is held back; other central-born records are created at the site."""
    engine.site.template_ids = ["vitals"]
    engine.site.save()
    patient = PatientLink.objects.get().fhir_patient_id
    new = engine.fhir.create({"resourceType": "Observation", "status": "final", "code": {"text": "temp"},
                              "subject": {"reference": f"Patient/{patient}"},
                              "valueQuantity": {"value": 36.2, "unit": "Cel"}}).resource
    run = central_change(engine, f"Observation/{new['id']}", "1")
    assert engine.drive(run) == SyncRun.Status.DONE
    assert len(engine.openehr.writes) == 1
