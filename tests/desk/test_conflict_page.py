"""The conflict page in clinical words, and the resolved page saying which side each field kept."""
import json

from django.urls import reverse

from sync.workflow import diff
from sync.workflow.versions import versions_seen

from conflictdesk.desk.forms import field_token


def test_rows_are_titled_clinically_with_units_and_paths_aside(login, people, conflict):
    body = login(people.clinician).get(reverse("desk:conflict", args=[conflict.pk])).content.decode()
    assert body.count('<span class="what">Body temperature</span>') == 2
    assert '<span class="what">Body temperature · status</span>' in body
    assert "<mark>38.5 °C</mark>" in body  # the site's changed value, its unit shown
    assert "<summary>Technical paths</summary>" in body
    assert "Observation: Body temperature" in body and "ids and versions</summary>" in body


def test_the_resolved_page_shows_per_field_the_side_kept_and_the_value_written(login, people, conflict, engine_hook,
                                                                                live_versions):
    comparison = diff.compare(conflict)
    first = comparison.fields[0].key
    picks = {field_token(f.id): ("site" if f.key == first and f.element == "valueQuantity" else "central")
             for f in comparison.fields}
    client = login(people.clinician)
    response = client.post(reverse("desk:conflict_decide", args=[conflict.pk]), {
        "choice": "merge", "reason": "site re-measured", "seen": json.dumps(versions_seen(conflict)), **picks})
    assert response.status_code == 302
    body = login(people.auditor).get(reverse("desk:conflict", args=[conflict.pk])).content.decode()
    assert "Written to both sides" in body
    assert body.count('class="tag tag-kept-site"') == 1 and body.count('class="tag tag-kept-central"') == 2
    assert '<td class="val-written"><ul class="vals"><li>38.5 °C</li></ul>' in body
