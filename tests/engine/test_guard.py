"""The runtime round-trip guard (sync/workflow/guard.py) with the REAL mapping and fake servers.

The injected lossy mapping drops the systolic magnitude from the blood-pressure Observation AFTER the
mapping's own residue check (to_fhir's result, as the services hand it to the step): the value is neither
kept in the residue nor declared lost, the way a faulty later step or hook would lose it.  Reverse: the
built composition loses the systolic magnitude after from_fhir, undeclared.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from audit.chain import payload_hash
from audit.models import AuditEvent
from audit.record import record_event, system_actor
from sync import mapping
from sync.identity import central_record_key, record_key
from sync.mapping import rmpath
from sync.mapping.residue import strip
from sync.models import ChangeEvent, DeadLetter, Direction, EngineWrite, PatientLink, Site, SyncRun
from sync.workflow import guard, template_check
from sync.workflow.runner import advance
from sync.workflow.services import Services, use_services

from .fakes import FakeFHIR, FakeOpenEHR

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "oncology" / "oncology_encounter.composition.json"
VO = "22222222-2222-4222-8222-222222222222"
BP = "openEHR-EHR-OBSERVATION.blood_pressure.v2"
SYSTOLIC = "8480-6"
TEMPLATE = "guard_vitals"


def bp_composition() -> dict:
    """The fixture's blood pressure alone, under an unmapped report root (as bench/transform.py does)."""
    c = json.loads(FIXTURE.read_text(encoding="utf-8-sig"))
    c.update(archetype_node_id="openEHR-EHR-COMPOSITION.report.v1",
             content=[e for e in c["content"] if e.get("archetype_node_id") == BP])
    c["archetype_details"]["template_id"]["value"] = TEMPLATE
    return c


def drop_systolic(resource: dict) -> None:
    for comp in resource.get("component") or []:
        if any(c.get("code") == SYSTOLIC for c in comp["code"].get("coding", [])):
            comp.get("valueQuantity", {}).pop("value", None)


def real_mapping(**overrides):
    return SimpleNamespace(**{**dict(
        to_fhir=mapping.to_fhir, to_openehr=mapping.to_openehr, from_fhir=mapping.from_fhir,
        map_back=mapping.map_back, build_provenance=mapping.build_provenance, validate_fhir=mapping.validate_fhir,
        clinical_content=mapping.clinical_content, compare_clinical=mapping.compare_clinical), **overrides})


@pytest.fixture
def world(db, settings, monkeypatch, django_capture_on_commit_callbacks):
    from sync.workflow import dispatch

    settings.CONFLICTDESK_HAPI_VALIDATE = False
    settings.CONFLICTDESK_STAFF_EMAILS = []
    monkeypatch.setattr(dispatch, "send", lambda run_id, countdown: None)
    fhir, openehr = FakeFHIR(), FakeOpenEHR()
    template_check.clear_cache()
    services = Services(fhir=fhir, openehr=lambda site: openehr, mapping=real_mapping(),
                        audit=SimpleNamespace(record_event=record_event, payload_hash=payload_hash,
                                              system_actor=system_actor))
    site = Site.objects.create(name="site1", openehr_base_url="http://site1.test/v1", local_demo=True,
                               template_ids=[TEMPLATE])
    fhir._put({"resourceType": "Patient", "id": "p1", "active": True})
    PatientLink.objects.create(site=site, ehr_id="ehr-1", fhir_patient_id="p1")

    def commit(composition: dict) -> SyncRun:
        version_uid = f"{VO}::site1::1"
        openehr.compositions[version_uid] = {**composition, "uid": {"_type": "OBJECT_VERSION_ID", "value": version_uid}}
        event = ChangeEvent.objects.create(direction=Direction.TO_FHIR, source="site:site1", site=site,
                                           source_object_id=VO, source_version=version_uid, version_number=1,
                                           ehr_id="ehr-1")
        return SyncRun.objects.create(change_event=event, direction=Direction.TO_FHIR, site=site,
                                      record_key=record_key("site1", VO))

    def central(resource: dict) -> SyncRun:
        fhir._put(resource)
        event = ChangeEvent.objects.create(direction=Direction.TO_OPENEHR, source="central",
                                           source_object_id=f"{resource['resourceType']}/{resource['id']}",
                                           source_version="1", version_number=1)
        return SyncRun.objects.create(change_event=event, direction=Direction.TO_OPENEHR,
                                      record_key=central_record_key(resource["resourceType"], resource["id"]))

    def drive(run):
        with django_capture_on_commit_callbacks(execute=True):
            status = advance(run.pk, "w1")
        run.refresh_from_db()
        return status

    with use_services(services):
        yield SimpleNamespace(fhir=fhir, openehr=openehr, site=site, commit=commit, central=central, drive=drive,
                              services=services)


@pytest.fixture
def lossy_forward(world):
    """The services' forward mapping drops the systolic magnitude after its residue self-check: undeclared."""
    def to_fhir_then_lose(composition, **kw):
        result = mapping.to_fhir(composition, **kw)
        for res in result.resources:
            drop_systolic(res)
        return result

    world.services.mapping = real_mapping(to_fhir=to_fhir_then_lose)


def guard_events(outcome: str | None = None):
    events = AuditEvent.objects.filter(action="guard.checked")
    return list(events.filter(outcome=outcome) if outcome else events)


def test_it_dead_letters_an_undeclared_loss_with_its_diff_and_writes_nothing(world, lossy_forward):
    run = world.commit(bp_composition())
    assert world.drive(run) == SyncRun.Status.DEAD_LETTER
    letter = DeadLetter.objects.get(run=run)
    assert (letter.cause, letter.step, letter.rule) == (DeadLetter.Cause.FIDELITY, "transform", guard.RULE)
    assert letter.path.startswith(f"/content[{BP}]")
    diff = letter.detail["error_detail"]
    assert set(diff) == {"source", "mapped", "mapped_back"}  # what the desk renders side by side
    [(where, value)] = [(p, v) for p, v in diff["source"].items() if p.endswith("/magnitude")]
    assert isinstance(value, (int, float)) and diff["mapped_back"][where] is None
    assert any(r["resourceType"] == "Observation" for r in diff["mapped"].values())
    assert world.fhir.transactions == [] and not EngineWrite.objects.exists()  # nothing written
    [event] = guard_events()
    assert event.outcome == "blocked" and event.run_id == run.pk
    assert event.detail["undeclared"] >= 1 and event.detail["mode"] == "strict" and event.detail["site_id"] == world.site.pk
    assert "magnitude" not in json.dumps(event.detail)  # ids and counts only


def test_record_only_records_the_diff_on_the_run_and_completes(world, lossy_forward):
    Site.objects.filter(pk=world.site.pk).update(fidelity_guard=Site.GuardMode.RECORD_ONLY)
    run = world.commit(bp_composition())
    assert world.drive(run) == SyncRun.Status.DONE
    undeclared = [x for x in run.losses if x["kind"] == "undeclared"]
    assert undeclared and any(x["path"].endswith("/magnitude") for x in undeclared)
    assert all(set(x) == {"path", "reason", "kind"} for x in run.losses)  # no values on the run (the API shows it)
    [diff] = run.checkpoint["fidelity"]
    assert set(diff) == {"source", "mapped", "mapped_back"}
    assert len(world.fhir.transactions) == 1
    assert [e.outcome for e in guard_events()] == ["recorded_only"]


def test_declared_losses_are_recorded_and_the_run_completes(world):
    c = bp_composition()
    c["content"][0]["data"]["events"][0]["time"]["value"] = "2025-03-14T10:30:00"  # no zone: FHIR needs one
    run = world.commit(c)
    assert world.drive(run) == SyncRun.Status.DONE
    assert run.losses and {x["kind"] for x in run.losses} == {"extension"}  # the exact time kept in the residue
    assert "fidelity" not in run.checkpoint and len(world.fhir.transactions) == 1
    [event] = guard_events()
    assert event.outcome == "declared_losses" and event.detail["declared"] == len(run.losses)
    assert event.detail["undeclared"] == 0


def test_a_clean_run_passes(engine):
    """The fake mapping loses nothing and declares nothing: outcome passed."""
    run = engine.commit(37.5)
    assert engine.drive(run) == SyncRun.Status.DONE
    assert [e.outcome for e in guard_events()] == ["passed"] and run.losses == []


def test_an_unmapped_entry_is_declared_not_a_difference(world):
    c = bp_composition()
    other = copy.deepcopy(c["content"][0])
    other["archetype_node_id"] = "openEHR-EHR-OBSERVATION.not_mapped_here.v1"
    c["content"].append(other)
    run = world.commit(c)
    assert world.drive(run) == SyncRun.Status.DONE
    assert any(x["kind"] == "unmapped-entry" for x in run.losses)
    assert [e.outcome for e in guard_events()] == ["declared_losses"]


# ------------------------------------------------------------------ reverse
def bp_resource() -> dict:
    """A FHIR-born blood pressure (the forward mapping's output, its source identity removed)."""
    c = bp_composition()
    c["uid"] = {"_type": "OBJECT_VERSION_ID", "value": f"{VO}::x::1"}
    obs = next(r for r in mapping.to_fhir(c, site="x", ehr_id="e", patient_ref="Patient/p1").resources
               if r["resourceType"] == "Observation")
    obs = strip(obs)
    obs.pop("identifier")
    return {**obs, "id": "bp-central-1"}


def lossy_from_fhir(resources, **kw):
    out = mapping.from_fhir(resources, **kw)
    for _, entry in rmpath.entries(out.composition):
        for _, node in rmpath.walk(entry):
            if isinstance(node.get("items"), list):  # the systolic ELEMENT (at0004) goes, undeclared
                node["items"] = [x for x in node["items"] if x.get("archetype_node_id") != "at0004"]
    return out


def allow_template(world, resource):
    comp = mapping.to_openehr([resource], template_id=TEMPLATE)
    paths = [{"id": str(i), "aqlPath": p, "children": []} for i, p in enumerate(sorted(set(template_check.node_paths(comp))))]
    world.openehr.templates[TEMPLATE] = {"templateId": TEMPLATE, "tree": {"id": TEMPLATE, "aqlPath": "", "children": paths}}


def test_reverse_dead_letters_an_undeclared_loss_and_writes_nothing_at_the_site(world):
    world.services.mapping = real_mapping(from_fhir=lossy_from_fhir)
    run = world.central(bp_resource())
    assert world.drive(run) == SyncRun.Status.DEAD_LETTER
    letter = DeadLetter.objects.get(run=run)
    assert letter.cause == DeadLetter.Cause.FIDELITY and letter.step == "transform"
    diff = letter.detail["error_detail"]
    assert set(diff) == {"source", "mapped", "mapped_back"}
    assert any("valueQuantity" in p and SYSTOLIC not in p for p in diff["source"])
    assert world.openehr.writes == []
    assert [e.outcome for e in guard_events()] == ["blocked"]


def test_reverse_record_only_completes_with_the_diff_on_the_run(world):
    Site.objects.filter(pk=world.site.pk).update(fidelity_guard=Site.GuardMode.RECORD_ONLY)
    world.services.mapping = real_mapping(from_fhir=lossy_from_fhir)
    resource = bp_resource()
    allow_template(world, resource)
    run = world.central(resource)
    assert world.drive(run) == SyncRun.Status.DONE, getattr(run, "dead_letter", None) and run.dead_letter.error
    assert any(x["kind"] == "undeclared" and "valueQuantity" in x["path"] for x in run.losses)
    assert len(world.openehr.writes) == 1
    assert [e.outcome for e in guard_events()] == ["recorded_only"]


def test_reverse_without_loss_passes_or_declares(world):
    resource = bp_resource()
    allow_template(world, resource)
    run = world.central(resource)
    assert world.drive(run) == SyncRun.Status.DONE
    assert not [x for x in run.losses if x["kind"] == "undeclared"]
    assert [e.outcome for e in guard_events()] in (["passed"], ["declared_losses"])


def test_a_central_record_at_a_site_whose_template_is_a_report_is_labelled_with_that_root(world):
    """The mapping knows only registered OPTs; the engine reads the root from the site's web template, so a new
    composition is a COMPOSITION.report.v1 where the template says so (it was labelled encounter.v1)."""
    world.services.mapping = real_mapping()
    resource = bp_resource()
    allow_template(world, resource)
    world.openehr.templates[TEMPLATE]["tree"]["nodeId"] = "openEHR-EHR-COMPOSITION.report.v1"
    run = world.central(resource)
    assert world.drive(run) == SyncRun.Status.DONE
    [written] = world.openehr.writes
    assert world.openehr.compositions[written]["archetype_node_id"] == "openEHR-EHR-COMPOSITION.report.v1"
