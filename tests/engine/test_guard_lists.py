"""The fidelity guard on persistent lists (issue 18): a problem, medication or adverse reaction list mapped to a
List passes both ways with its header compared (the List is composition level, guard.LEVEL), no false alarm."""
from __future__ import annotations

import pytest

from sync import mapping
from sync.workflow import guard
from tests.mapping.test_persistent_lists import LISTS, persistent_list


@pytest.mark.parametrize("kind", sorted(LISTS))
def test_a_list_passes_the_guard_both_ways_with_its_header_checked(kind):
    c = persistent_list(kind)
    c["name"]["value"] = "Reviewed " + c["name"]["value"]
    res = mapping.to_fhir(c, site="site-a", ehr_id="e", patient_ref="Patient/p1")
    forward = guard.check_forward(mapping, c, res.resources, res.losses)
    assert forward.undeclared == []
    entries, head = mapping.map_back(res.resources, template_id=guard._template_id(c),
                                     header_for=c if any(r["resourceType"] in guard.LEVEL for r in res.resources)
                                     else None)
    assert head["name"] == c["name"]  # the header is rebuilt from the List, so the guard compares it
    out = mapping.from_fhir(res.resources, template_id=guard._template_id(c), base_composition=c)
    assert guard.check_reverse(mapping, res.resources, out).undeclared == []
