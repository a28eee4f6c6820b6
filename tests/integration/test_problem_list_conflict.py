"""A problem list (COMPOSITION.problem_list.v2) is kept as one composition updated in place at the site (the CKM
archetype constrains its category to 433 event, not 431 persistent; EHRbase refuses 431 for it): the engine's
update path covers it.  Synced once, then the diagnosis is edited at the
site (a new version of the same composition) and centrally (the Condition): a conflict, nothing overwritten.

The template is built from the CKM archetypes (COMPOSITION.problem_list.v2 holding EVALUATION.problem_diagnosis.v1,
tests/templates/families.py) and the composition is its example (sync.mapping.example) with the diagnosis named;
the runs are driven in this process with ``advance`` (no worker), every server real, a fresh EHR per test."""
from __future__ import annotations

import sys
from datetime import datetime, timezone

import pytest

from sync.clients.openehr import OpenEHRClient
from sync.detection import poll_site
from sync.mapping.example import example_composition
from sync.models import Conflict, RecordLink, SyncRun
from sync.workflow.runner import advance
from tests.templates import families
from tests.templates.conftest import SCRIPT, load

pytestmark = [pytest.mark.integration]

LIST = ("COMPOSITION.problem_list.v2", ["EVALUATION.problem_diagnosis.v1"], [])
DIAGNOSIS = "openEHR-EHR-EVALUATION.problem_diagnosis.v1"


def _now():
    return datetime.now(timezone.utc)


@pytest.fixture(scope="module")
def opt() -> bytes:
    builder = sys.modules.get("build_oncology_opt") or load("build_oncology_opt", SCRIPT)
    return families.build(builder, "problem_list", LIST)


@pytest.fixture
def cdr(ehrbase_urls, opt):
    with OpenEHRClient(ehrbase_urls[0]) as client:
        client.upload_template(opt)
        yield client


def problem_list(opt: bytes, diagnosis: str) -> dict:
    """The template's example problem list, its diagnosis named ``diagnosis``."""
    def name(ask):
        return diagnosis if ask.kind == "text" and ask.path.endswith("[at0002]/value") and DIAGNOSIS in ask.path \
            else ask.default
    comp = example_composition(opt, values=name)
    comp.pop("uid", None)
    return comp


def drive_all(site, ehr) -> list[str]:
    """Detect at the site and run this EHR's open runs to their end (the CDR is shared: only ours)."""
    poll_site(site)
    runs = SyncRun.objects.filter(change_event__ehr_id=ehr).exclude(status__in=["done", "dead_letter", "conflict"])
    return [advance(run.pk, "test") for run in runs.order_by("pk")]


def test_a_problem_list_edited_at_the_site_and_centrally_is_a_conflict(cdr, fhir, site, ehr, opt):
    v1 = cdr.create_composition(ehr, problem_list(opt, "Malignant neoplasm of breast"))
    assert drive_all(site, ehr) == ["done"]
    link = RecordLink.objects.get(versioned_object_uid=v1.uid)
    [condition_ref] = [r for r in link.fhir_resources if r["type"] == "Condition"]
    [list_ref] = [r for r in link.fhir_resources if r["type"] == "List"]  # the list itself (issue 18)
    listed = fhir.read("List", list_ref["id"])
    assert [e["item"] for e in listed["entry"]] == [{"reference": f"Condition/{condition_ref['id']}"}]
    condition = fhir.read("Condition", condition_ref["id"])
    assert condition["code"]["text"] == "Malignant neoplasm of breast"
    condition["code"] = {"text": "Malignant neoplasm of breast, upper outer quadrant"}  # the centre refines it
    central = fhir.update(condition, if_match_version=condition["meta"]["versionId"])
    v2 = cdr.update_composition(ehr, v1.version_uid, problem_list(opt, "Malignant neoplasm of left breast"))
    assert v2.uid == v1.uid and v2.version == 2  # updated in place, as a persistent list is
    assert drive_all(site, ehr) == ["conflict"]
    conflict = Conflict.objects.get(openehr_version_uid=v2.version_uid, status=Conflict.Status.OPEN)
    assert "Malignant neoplasm of left breast" in str(conflict.openehr_composition)
    assert "upper outer quadrant" in str(conflict.fhir_resources)
    now = fhir.read("Condition", condition_ref["id"])
    assert now["meta"]["versionId"] == central.version_id and "upper outer quadrant" in now["code"]["text"]
