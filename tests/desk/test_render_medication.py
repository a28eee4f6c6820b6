"""The clinical view reads a Medication made from a medication details cluster (issue 18) as its name with
its form, and the statement names it by reference (the same to_fhir output the desk shows)."""
from conflictdesk.desk.render import resource_rows
from sync.mapping import to_fhir
from tests.mapping import test_medication_details as medication

ARGS = dict(site="s", ehr_id="e", patient_ref="Patient/1")


def test_a_medication_is_titled_by_its_name_and_reads_its_form():
    res = to_fhir(medication._kds(), **ARGS).resources
    [med] = medication._of(res, "Medication")
    rows = [(r.depth, r.label, r.value, r.code) for r in resource_rows(med)]
    assert rows[0][:3] == (0, "Medication", "ASS 100 - 1a Pharma TAH Tabletten")
    assert (1, "form", "Tablet", "standardterms.edqm.eu 10219000") in rows
    [ms] = medication._of(res, "MedicationStatement")
    assert (1, "medicationReference", f"Medication/{med['id']}") in [
        (r.depth, r.label, r.value) for r in resource_rows(ms)]
