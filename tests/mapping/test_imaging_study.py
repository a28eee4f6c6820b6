"""Issue 18, imaging row: the study an imaging report is about <-> an ImagingStudy (base R4).

OBSERVATION.imaging_exam_result.v1's protocol 'Study instance identifier' at0092 is, by the archetype, the DICOM
Study Instance UID (0020,000D) and ImagingStudy.identifier; the hook imagingStudy (hooks_imaging.py) makes the
ImagingStudy the DiagnosticReport names in imagingStudy (identifier urn:dicom:uid|urn:oid:<uid>, status, coded
modality, started, description) and reads it back.  No UID, or an entry of several events: no ImagingStudy.
The study is no entry of its own on the way back (from_fhir._groups)."""
import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.mapping import compare_clinical, from_fhir, to_fhir, to_openehr, validate_fhir
from sync.mapping import datatypes as dt
from sync.mapping.coverage import coverage
from sync.mapping.hooks_imaging import DICOM_UID_SYSTEM, STUDY_STATUS_CODES, study_uid
from sync.mapping.residue import strip
from sync.mapping.spec import registry

from .conftest import REPO_DIR
from .hapi import hapi_errors
from .test_general_rows import ARGS, IMAGING, TEXT, TIMES, _composition, _el, _imaging, _terms, _tree

COVERS = {"OBSERVATION.imaging_exam_result.v1": "forward reverse hapi"}

UID = "1.2.840.113619.2.55.3.604688119.969.1234567890.123"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
CT = dt.coded_text("Computed Tomography", "DICOM", "CT")
RAD = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"}]}]


def _study(entry, uid=UID, *, status="at0101", description=None, modalities=(), started=None, report_id=None):
    """The study's elements in an imaging result: protocol (identifier, status, description), event data
    (modality, study date)."""
    items = []
    if uid is not None:
        items.append(_el("at0092", "Study instance identifier", uid if isinstance(uid, dict) else
                         {"_type": "DV_IDENTIFIER", "id": uid}))
    if description:
        items.append(_el("at0105", "Study description", {"_type": "DV_TEXT", "value": description}))
    if report_id:
        items.append(_el("at0104", "Report identifier", {"_type": "DV_IDENTIFIER", "id": report_id}))
    if status:
        items.append(_el("at0099", "Study status", status if isinstance(status, dict) else
                         dt.coded_text(_terms(IMAGING)[status], "local", status)))
    if items:
        entry["protocol"] = _tree("at0025", "Tree", items)
    data = entry["data"]["events"][0]["data"]["items"]
    data += [_el("at0091", "Modality", m) for m in modalities]
    if started:
        data.append(_el("at0070", "Study date", {"_type": "DV_DATE_TIME", "value": started}))
    return entry


def _forward(*entries) -> tuple[dict, list[dict]]:
    comp = _composition(*entries)
    return comp, [r for r in to_fhir(comp, **ARGS).resources if r["resourceType"] not in ("Encounter", "Composition")]


def _same(comp, back) -> list:
    return compare_clinical({"content": comp["content"]}, {"content": back["content"]})


def _by_type(resources) -> dict:
    out = {}
    for r in resources:
        out.setdefault(r["resourceType"], []).append(r)
    return out


def _protocol(entry) -> dict:
    return {i["archetype_node_id"]: i["value"] for i in (entry.get("protocol") or {}).get("items") or []}


def _event_items(entry, node) -> list:
    return [i["value"] for ev in entry["data"]["events"] for i in ev["data"]["items"] if i["archetype_node_id"] == node]


# ------------------------------------------------------------------ openEHR -> FHIR -> openEHR
def test_a_study_identified_by_its_uid_is_an_imaging_study_the_report_names():
    entry = _study(_imaging("at0076"), description="CT CAP^WITH", modalities=[CT, {"_type": "DV_TEXT", "value": "PET"}],
                   started="2025-03-10T13:30:00+01:00", report_id="R-1")
    comp, resources = _forward(entry)
    [report], [study] = _by_type(resources)["DiagnosticReport"], _by_type(resources)["ImagingStudy"]
    assert report["imagingStudy"] == [{"reference": f"ImagingStudy/{study['id']}"}]
    assert study["identifier"][1:] == [{"use": "official", "system": DICOM_UID_SYSTEM, "value": f"urn:oid:{UID}"}]
    assert study["identifier"][0]["value"].endswith(f"[{IMAGING}]/protocol[at0025]/items[at0092]")
    assert study["status"] == "available"
    assert study["modality"] == [{"system": DCM, "code": "CT", "display": "Computed Tomography"}]  # coded only
    assert (study["started"], study["description"]) == ("2025-03-10T13:30:00+01:00", "CT CAP^WITH")
    assert study["subject"] == {"reference": "Patient/1"}
    assert validate_fhir(study) == [] and validate_fhir(report) == []
    back = to_openehr(resources, template_id="t")
    assert len(back["content"]) == 1  # the study is part of its report's entry, never an entry of its own
    assert _same(comp, back) == []
    assert _protocol(back["content"][0])["at0092"]["id"] == UID


def test_the_standard_elements_alone_give_the_study_back():
    comp, resources = _forward(_study(_imaging("at0076"), description="MR BREAST", modalities=[CT],
                                      started="2025-03-10T13:30:00+01:00", status="at0102"))
    back = to_openehr([strip(r) for r in resources], template_id="t")
    [entry] = back["content"]
    assert _protocol(entry)["at0092"] == {"_type": "DV_IDENTIFIER", "id": UID}
    assert _protocol(entry)["at0099"] == dt.coded_text("Cancelled", "local", "at0102")
    assert _protocol(entry)["at0105"] == {"_type": "DV_TEXT", "value": "MR BREAST"}
    assert _event_items(entry, "at0091") == [dt.coded_text("Computed Tomography", "DICOM", "CT")]
    assert _event_items(entry, "at0070") == [{"_type": "DV_DATE_TIME", "value": "2025-03-10T13:30:00+01:00"}]


def test_the_study_status_table_is_the_archetypes_list():
    terms = _terms(IMAGING)
    assert {at: rubric for at, (rubric, _) in STUDY_STATUS_CODES.items()} == \
        {at: terms[at] for at in ("at0100", "at0101", "at0102", "at0103")}
    assert {code for _, code in STUDY_STATUS_CODES.values()} == {"registered", "available", "cancelled", "unknown"}


@pytest.mark.parametrize("status,code", [("at0100", "registered"), ("at0101", "available"), ("at0102", "cancelled"),
                                         ("at0103", "unknown"), (None, "unknown"),
                                         ({"_type": "DV_TEXT", "value": "archived"}, "unknown")])
def test_each_study_status_maps_both_ways(status, code):
    comp, resources = _forward(_study(_imaging("at0076"), status=status))
    [study] = _by_type(resources)["ImagingStudy"]
    assert study["status"] == code
    assert _same(comp, to_openehr(resources, template_id="t")) == []


@pytest.mark.parametrize("value", [None, {"_type": "DV_IDENTIFIER", "id": "ACC-20250310-7"},
                                   {"_type": "DV_TEXT", "value": "1.2.03.4"}, {"_type": "DV_TEXT", "value": "1"},
                                   {"_type": "DV_IDENTIFIER", "id": "1." + "2" * 63}])
def test_without_a_dicom_uid_no_study_is_made_and_the_entry_comes_back(value):
    entry = _study(_imaging("at0076"), uid=value, modalities=[CT])
    comp, resources = _forward(entry)
    assert [r["resourceType"] for r in resources] == ["DiagnosticReport"]
    assert "imagingStudy" not in resources[0]
    assert _same(comp, to_openehr(resources, template_id="t")) == []


def test_an_entry_of_several_events_makes_no_study_and_comes_back():
    entry = _study(_imaging("at0076"), modalities=[CT], started="2025-03-10T13:30:00+01:00")
    later = copy.deepcopy(entry["data"]["events"][0])
    later["time"] = {"_type": "DV_DATE_TIME", "value": "2025-03-10T16:00:00+01:00"}
    later["data"]["items"] = [i for i in later["data"]["items"] if i["archetype_node_id"] != "at0091"]
    entry["data"]["events"].append(later)
    comp, resources = _forward(entry)
    assert [r["resourceType"] for r in resources] == ["DiagnosticReport", "DiagnosticReport"]
    assert _same(comp, to_openehr(resources, template_id="t")) == []


def test_two_reports_each_name_their_own_study():
    other = "2.16.124.113543.6003.1154777499.30246.19789.3503430045"
    comp, resources = _forward(_study(_imaging("at0076"), modalities=[CT]),
                               _study(_imaging("at0075", name=dt.coded_text("MR brain", "LOINC", "24590-2")), other))
    reports, studies = _by_type(resources)["DiagnosticReport"], _by_type(resources)["ImagingStudy"]
    uids = {s["id"]: s["identifier"][1]["value"] for s in studies}
    assert [uids[r["imagingStudy"][0]["reference"].split("/")[1]] for r in reports] == \
        [f"urn:oid:{UID}", f"urn:oid:{other}"]
    back = to_openehr(list(reversed(resources)), template_id="t")
    assert _same(comp, back) == []


@pytest.mark.parametrize("value,uid", [("1.2.840.10008.1.2", "1.2.840.10008.1.2"), (" urn:oid:1.2.3 ", "1.2.3"),
                                       ("0.0", "0.0"), ("1.02.3", None), ("1", None), ("1.2.", None), ("a.b", None),
                                       ("1." + "2" * 62, "1." + "2" * 62), ("1." + "2" * 63, None), ("", None)])
def test_a_uid_is_dicoms_syntax(value, uid):
    assert study_uid({"_type": "DV_TEXT", "value": value}) == uid
    assert study_uid({"_type": "DV_IDENTIFIER", "id": value}) == uid
    assert study_uid({"_type": "DV_COUNT", "magnitude": 1}) is None and study_uid(None) is None


# ------------------------------------------------------------------ FHIR-born
def _born_report(**extra):
    return {"resourceType": "DiagnosticReport", "id": "dr-9", "status": "final", "category": RAD,
            "code": {"text": "MR brain"}, "subject": {"reference": "Patient/1"},
            "effectiveDateTime": "2025-04-01T10:00:00Z", "imagingStudy": [{"reference": "ImagingStudy/is-1"}], **extra}


def _born_study(**extra):
    return {"resourceType": "ImagingStudy", "id": "is-1", "status": "available", "subject": {"reference": "Patient/1"},
            "identifier": [{"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{UID}"},
                           {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                 "code": "ACSN"}]}, "value": "W12"}],
            "modality": [{"system": DCM, "code": "MR"}], "numberOfSeries": 3, "started": "2025-04-01T09:40:00Z",
            "description": "MR BRAIN^ROUTINE", **extra}


def _again(composition):
    comp = {**copy.deepcopy(composition), "uid": {"value": "aaaaaaaa-0000-4000-8000-000000000018::x::1"}}
    return _by_type(r for r in to_fhir(comp, **ARGS).resources if r["resourceType"] not in ("Encounter", "Composition"))


def test_a_central_report_and_its_study_come_back_and_nothing_is_dropped():
    out = from_fhir([_born_report(), _born_study()], template_id="t")
    [entry] = out.composition["content"]
    assert _protocol(entry)["at0092"] == {"_type": "DV_IDENTIFIER", "id": UID}
    assert _protocol(entry)["at0099"]["defining_code"]["code_string"] == "at0101"
    assert _protocol(entry)["at0105"]["value"] == "MR BRAIN^ROUTINE"
    assert [m["defining_code"]["code_string"] for m in _event_items(entry, "at0091")] == ["MR"]
    assert _event_items(entry, "at0070")[0]["value"] == "2025-04-01T09:40:00Z"
    assert out.losses == []
    again = _again(out.composition)
    [report], [study] = again["DiagnosticReport"], again["ImagingStudy"]
    assert report["imagingStudy"] == [{"reference": f"ImagingStudy/{study['id']}"}]
    sent = _born_study()
    # what the archetype has no node for (the accession number, the series count) is given back as sent
    assert [i for i in study["identifier"] if i.get("system") != "urn:conflictdesk:source"] == sent["identifier"]
    assert {k: study.get(k) for k in ("status", "modality", "numberOfSeries", "started", "description")} == \
        {k: sent[k] for k in ("status", "modality", "numberOfSeries", "started", "description")}


def test_a_central_study_without_a_dicom_uid_is_not_read_into_the_protocol_and_not_lost():
    study = _born_study(identifier=[{"system": "urn:example:pacs", "value": "S-77"}])
    out = from_fhir([_born_report(), study], template_id="t")
    [entry] = out.composition["content"]
    assert "at0092" not in _protocol(entry) and not _event_items(entry, "at0091")
    assert out.losses == []  # the study is kept whole in the entry's feeder audit
    again = _again(out.composition)
    assert "ImagingStudy" not in again  # we make none without a UID: the reference is given back as sent
    assert again["DiagnosticReport"][0]["imagingStudy"] == [{"reference": "ImagingStudy/is-1"}]


def test_a_study_alone_is_no_entry():
    out = from_fhir([_born_report(imagingStudy=None), _born_study()], template_id="t")
    assert len(out.composition["content"]) == 1 and "protocol" not in out.composition["content"][0]
    assert [x.kind for x in out.losses if x.path.startswith("ImagingStudy/")] == ["unmapped-resource"]


def test_the_coverage_report_counts_the_study():
    cov = coverage(REPO_DIR / "tests")
    [row] = [r for r in cov.rows if r.name == "OBSERVATION.imaging_exam_result.v1"]
    assert row.resources == ["DiagnosticReport", "ImagingStudy"]
    assert [t.resource for t in cov.types if any(r is row for r in t.rows)] == ["DiagnosticReport", "ImagingStudy"]


# ------------------------------------------------------------------ property
UIDS = st.lists(st.integers(0, 10 ** 6), min_size=2, max_size=6).map(lambda xs: ".".join(map(str, xs)))


@st.composite
def studied_entries(draw):
    entry = _imaging(draw(st.sampled_from(["at0076", "at0075", None])), time=draw(TIMES))
    return _study(entry, uid=draw(st.one_of(st.none(), UIDS, TEXT)),
                  status=draw(st.one_of(st.none(), st.sampled_from(sorted(STUDY_STATUS_CODES)))),
                  description=draw(st.one_of(st.none(), TEXT)),
                  modalities=draw(st.lists(st.one_of(st.sampled_from([CT, dt.coded_text("MR", "DICOM", "MR")]),
                                                     TEXT.map(lambda t: {"_type": "DV_TEXT", "value": t})),
                                           max_size=3)),
                  started=draw(st.one_of(st.none(), TIMES)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(studied_entries(), min_size=1, max_size=2))
def test_round_trip_property(entries):
    comp, resources = _forward(*entries)
    assert all(validate_fhir(r) == [] for r in resources)
    studies = _by_type(resources).get("ImagingStudy", [])
    assert len(studies) == sum(1 for e in entries if study_uid(_protocol(e).get("at0092")))
    back = to_openehr(resources, template_id="t")
    assert _same(comp, back) == []


# ------------------------------------------------------------------ HAPI $validate
@pytest.mark.integration
def test_hapi_validates_the_study_and_its_report(fhir_base_url):
    _, resources = _forward(_study(_imaging("at0076"), description="CT CAP", modalities=[CT],
                                   started="2025-03-10T13:30:00+01:00"),
                            _study(_imaging("at0075"), "1.2.3.4", status=None))
    born = _again(from_fhir([_born_report(), _born_study()], template_id="t").composition)
    checked = resources + born["DiagnosticReport"] + born["ImagingStudy"]
    assert sorted(r["resourceType"] for r in checked) == ["DiagnosticReport"] * 3 + ["ImagingStudy"] * 3
    assert {r["id"]: hapi_errors(fhir_base_url, r) for r in checked} == {r["id"]: [] for r in checked}
