"""A fidelity dead letter made by the guard itself renders as source / mapped / mapped back."""
from __future__ import annotations

from django.urls import reverse

from sync import mapping
from sync.models import DeadLetter, Direction, SyncRun
from sync.workflow import guard
from tests.engine.test_guard import bp_composition, drop_systolic

from . import factories as f


def test_the_guards_diff_shows_the_lost_systolic_three_ways(login, people):
    source = bp_composition()
    source["uid"] = {"_type": "OBJECT_VERSION_ID", "value": "33333333-3333-4333-8333-333333333333::site1::1"}
    result = mapping.to_fhir(source, site="site1", ehr_id="e", patient_ref="Patient/p1")
    for r in result.resources:
        drop_systolic(r)  # lost after the mapping's own check: undeclared
    check = guard.check_forward(mapping, source, result.resources, result.losses)
    site = f.make_site()
    run = SyncRun.objects.create(direction=Direction.TO_FHIR, site=site, record_key="site1|guard",
                                 status=SyncRun.Status.DEAD_LETTER, step="transform")
    letter = DeadLetter.objects.create(run=run, cause=DeadLetter.Cause.FIDELITY, step="transform", rule=guard.RULE,
                                       error="site1|guard: the round trip changes 1 field(s)",
                                       detail={"attempts": [], "error_detail": check.diff()})
    page = login(people.steward).get(reverse("desk:deadletter", args=[letter.pk])).content.decode()
    assert "Fidelity: source, mapped, mapped back" in page
    assert page.count('<section class="side"><h3>') == 3
    for name in ("<h3>source</h3>", "<h3>mapped</h3>", "<h3>mapped_back</h3>"):
        assert name in page
    [path] = [p for p in check.diff()["source"] if p.endswith("/magnitude")]
    assert path in page and "Systolic" in page  # the field and the FHIR resource that lost it
