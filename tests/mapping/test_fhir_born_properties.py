"""FHIR-born resources of every mapped type, with generated base-resource elements (issue 21).

Each case starts from a valid resource the mapping reads (a corpus example or a small one) and adds any of
the base resource's other elements hypothesis picks: every top-level element of the R4 model whose type is
Identifier, Reference, CodeableConcept, Coding, Annotation, Period, string, markdown, dateTime or boolean,
plus extensions.  Whatever the archetype holds or not, FHIR -> openEHR -> FHIR gives the resource back
equal on clinical content (only fixed additions of ours), valid, and nothing is declared lost."""
import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.mapping import compare_clinical, fhirmodel, from_fhir, to_fhir, validate_fhir
from sync.mapping.residue import strip

from .conftest import corpus_files, load

UID = "aaaaaaaa-0000-4000-8000-000000000121::x::1"
ADDED = ("dictionary_item_added", "iterable_item_added")
UCUM = "http://unitsofmeasure.org"
# not generated: identity, narrative, the patient, contained resources, modifier extensions, and elements
# whose presence changes what the resource means or claims (a data-absent reason next to a value is invalid)
# or which file reads it at all (claims go by code and category)
_SKIP = {"id", "text", "subject", "patient", "contained", "modifierExtension", "meta", "implicitRules",
         "dataAbsentReason", "language", "code", "category"}
_TYPES = ("Identifier", "Reference", "CodeableConcept", "Coding", "Annotation", "Period", "string", "markdown",
          "dateTime", "boolean", "Extension")


def _corpus(name: str) -> dict:
    return load(next(iter(corpus_files(f"fhir/{name}"))))


def _bundled(name: str, rtype: str) -> dict:
    return next(e["resource"] for e in _corpus(name)["entry"] if e["resource"]["resourceType"] == rtype)


SEEDS = {
    "Observation (vital sign)": lambda: _corpus("observation_vitals_heart_rate.json"),
    "Observation (laboratory)": lambda: _corpus("observation_lab_glucose_f001.json"),
    "Condition": lambda: _bundled("kds_diagnosis.patient1.bundle.json", "Condition"),
    "Procedure": lambda: _corpus("procedure_biopsy.json"),
    "MedicationRequest": lambda: _corpus("medicationrequest_0301.json"),
    "MedicationAdministration": lambda: {
        "resourceType": "MedicationAdministration", "id": "ma", "status": "completed",
        "subject": {"reference": "Patient/1"}, "medicationCodeableConcept": {"text": "Tamoxifen 20 mg"},
        "effectiveDateTime": "2025-03-01T10:00:00+01:00",
        "dosage": {"dose": {"value": 20, "unit": "mg", "system": UCUM, "code": "mg"}}},
    "MedicationStatement": lambda: {
        "resourceType": "MedicationStatement", "id": "ms", "status": "active", "subject": {"reference": "Patient/1"},
        "medicationCodeableConcept": {"text": "Ibuprofen 400 mg"}, "effectiveDateTime": "2025-01-10"},
    "RiskAssessment": lambda: _corpus("riskassessment_polygenic_brca.json"),
    "Goal": lambda: {"resourceType": "Goal", "id": "g", "lifecycleStatus": "active",
                     "description": {"text": "Disease-free at 5 years"}, "subject": {"reference": "Patient/1"}},
    "ServiceRequest": lambda: {"resourceType": "ServiceRequest", "id": "sr", "status": "active", "intent": "order",
                               "code": {"text": "Adjuvant radiotherapy"}, "subject": {"reference": "Patient/1"}},
    "AllergyIntolerance": lambda: {
        "resourceType": "AllergyIntolerance", "id": "ai", "patient": {"reference": "Patient/1"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "764146007", "display": "Penicillin"}]}},
    "Immunization": lambda: {
        "resourceType": "Immunization", "id": "im", "status": "completed", "patient": {"reference": "Patient/1"},
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]},
        "occurrenceDateTime": "2024-10-01"},
    "FamilyMemberHistory": lambda: {
        "resourceType": "FamilyMemberHistory", "id": "fh", "status": "completed", "patient": {"reference": "Patient/1"},
        "relationship": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}},
    "ClinicalImpression": lambda: {"resourceType": "ClinicalImpression", "id": "ci", "status": "completed",
                                   "subject": {"reference": "Patient/1"}, "summary": "Stable disease"},
    "EpisodeOfCare": lambda: {"resourceType": "EpisodeOfCare", "id": "eoc", "status": "active",
                              "patient": {"reference": "Patient/1"}, "period": {"start": "2025-01-02T08:00:00+01:00"}},
    "CarePlan": lambda: {"resourceType": "CarePlan", "id": "cp", "status": "active", "intent": "plan",
                         "subject": {"reference": "Patient/1"}, "title": "Adjuvant therapy"},
    "DiagnosticReport (imaging)": lambda: {
        "resourceType": "DiagnosticReport", "id": "rad", "status": "final", "subject": {"reference": "Patient/1"},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "24627-2"}]},
        "effectiveDateTime": "2025-02-03T10:00:00+01:00"},
    "Observation (ECOG, mCODE profile)": lambda: {  # the mCODE ecog-performance-status profile is claimed back
        "resourceType": "Observation", "id": "ecog", "status": "final", "subject": {"reference": "Patient/1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "89247-1"}]}, "valueInteger": 1,
        "effectiveDateTime": "2025-02-03T10:00:00+01:00"},
    "Observation (smoking status)": lambda: {
        "resourceType": "Observation", "id": "smk", "status": "final", "subject": {"reference": "Patient/1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]},
        "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "8517006"}]},
        "effectiveDateTime": "2025-02-03T10:00:00+01:00"},
}


def patient_of(resource: dict) -> str:
    return (resource.get("subject") or resource.get("patient"))["reference"]

_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", min_size=1, max_size=12).map(str.strip).filter(bool)
_code = st.text(alphabet="0123456789", min_size=3, max_size=8)
_when = st.sampled_from(["2024-05-01T09:30:00+02:00", "2025-01-31T23:59:59Z"])  # instant-valid too (issued)
_coding = st.builds(lambda c, d: {"system": "http://snomed.info/sct", "code": c, "display": d}, _code, _text)
VALUES = {
    "Identifier": st.builds(lambda s, v: {"system": f"urn:example:{s.replace(' ', '-')}", "value": v}, _text, _code),
    "Reference": st.one_of(st.builds(lambda i: {"reference": f"Practitioner/p{i}"}, _code),
                           st.builds(lambda d: {"display": d}, _text)),
    "CodeableConcept": st.builds(lambda c, t: {"coding": [c], "text": t}, _coding, _text),
    "Coding": _coding,
    "Annotation": st.builds(lambda t: {"text": t}, _text),
    "Period": st.builds(lambda s: {"start": s}, _when),
    "string": _text,
    "markdown": _text,
    "dateTime": _when,
    "boolean": st.booleans(),
    "Extension": st.builds(lambda u, v: {"url": f"https://example.org/fhir/ext/{u.replace(' ', '-')}", "valueString": v},
                           _text, _text),
}


def _choice(rtype: str, name: str) -> bool:
    return any(name[i].isupper() and len(fhirmodel.choices(rtype, name[:i])) > 1 for i in range(1, len(name)))


def _extra_elements(seed: dict) -> dict:
    rtype = seed["resourceType"]
    return {name: (is_list, tname) for name, (is_list, tname) in fhirmodel.fields(rtype).items()
            if name not in seed and name not in _SKIP and tname in _TYPES and not _choice(rtype, name)
            and fhirmodel.allowed_codes(rtype, name) is None  # a code of a required binding is no free text
            and not any(k.startswith(name) and k != name and _choice(rtype, k) for k in seed)}


@st.composite
def _resource(draw, kind: str):
    seed = SEEDS[kind]()
    extra = _extra_elements(seed)
    names = draw(st.lists(st.sampled_from(sorted(extra)), unique=True, max_size=6)) if extra else []
    for name in names:
        is_list, tname = extra[name]
        value = draw(VALUES[tname])
        seed[name] = [value] if is_list else value
    return seed


def _twin(resources: list[dict], source: dict) -> dict:
    return strip(next(r for r in resources if r["resourceType"] == source["resourceType"]))


@pytest.mark.parametrize("kind", sorted(SEEDS))
def test_every_mapped_type_offers_base_elements_to_generate(kind):
    assert len(_extra_elements(SEEDS[kind]())) >= 3  # the generator really adds elements the seed lacks


@pytest.mark.parametrize("kind", sorted(SEEDS))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_a_fhir_born_resource_comes_back_with_every_element_it_was_sent_with(kind, data):
    sent = data.draw(_resource(kind))
    out = from_fhir([copy.deepcopy(sent)], template_id="t")
    assert [x for x in out.losses if x.kind != "unmapped-entry"] == [] or _unparsable(sent, out.losses)
    comp = {**copy.deepcopy(out.composition), "uid": {"value": UID}}
    twin = _twin(to_fhir(comp, site="s", ehr_id="e", patient_ref=patient_of(sent)).resources, sent)
    assert validate_fhir(twin) == []
    lost = {x.path.split(":", 1)[1] for x in out.losses if ":" in x.path}
    diffs = [d["path"] for d in compare_clinical(sent, twin) if d["kind"] not in ADDED]
    assert [p for p in diffs if not any(p.startswith(f"root['{x}']") for x in lost)] == []


def _unparsable(sent: dict, losses) -> bool:
    """Only a code outside its required binding is declared lost (the corpus examples' own faults)."""
    return all(":" in x.path and not isinstance(sent.get(x.path.split(":", 1)[1]), (dict, list))
               and x.path.split(":", 1)[1] in ("status", "intent") for x in losses)
