"""The clinical view reads a CTCAE-graded adverse event as produced by the mapping (issue 17): titled by its
term, with its severity, the Condition it resulted in and its suspect."""
from conflictdesk.desk.render import resource_rows
from sync.mapping import to_fhir
from tests.mapping.test_ctcae import composition, ctcae, diagnosis, procedure


def test_an_adverse_event_is_titled_by_its_term_and_names_its_condition_and_suspect():
    out = {r["resourceType"]: r for r in to_fhir(composition(procedure(), diagnosis(ctcae())), site="s", ehr_id="e",
                                                  patient_ref="Patient/1").resources}
    rows = [(r.depth, r.label, r.value) for r in resource_rows(out["AdverseEvent"])]
    assert rows[0][:2] == (0, "AdverseEvent") and "Nausea" in rows[0][2]
    values = {v for _, _, v in rows}
    assert any("severe" in str(v).lower() for v in values)
    assert f"Condition/{out['Condition']['id']}" in values
    assert f"Procedure/{out['Procedure']['id']}" in values
    assert not [r for r in rows[1:] if r[1] == "event"]
