"""The dosage mapping shared by the medication rows (hooks_dosage, CLUSTER.dosage.v2's inline file):
timing_daily / timing_nondaily <-> Dosage.timing.repeat and asNeeded[x], dose and rate (Quantity,
Range, rateRatio "175 mg over 3 h"), the administration's effectivePeriod, both ways, in the
statement, the order and the administration; hypothesis over generated timings; HAPI $validate."""
import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.mapping import compare_clinical, from_fhir, to_fhir, to_openehr, validate_fhir
from sync.mapping import datatypes as dt
from sync.mapping.engine import entry_skeleton
from sync.mapping.residue import strip
from sync.mapping.spec import registry

from .hapi import hapi_errors

# The rows this module proves (sync.mapping.coverage reads it; tests/mapping/test_coverage.py checks it).
COVERS = {"CLUSTER.dosage.v2": "forward reverse hapi"}

STATEMENT = "openEHR-EHR-OBSERVATION.medication_statement.v0"
ORDER = "openEHR-EHR-INSTRUCTION.medication_order.v3"
ACTION = "openEHR-EHR-ACTION.medication.v1"
UID = "9d0a7c35-0000-4000-8000-000000000007::gen::1"
UCUM = "http://unitsofmeasure.org"


def _el(node, name, value):
    return {"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": name}, "archetype_node_id": node, "value": value}


def _cl(node, name, items):
    c = {"_type": "CLUSTER", "name": {"_type": "DV_TEXT", "value": name}, "archetype_node_id": node, "items": items}
    if node.startswith("openEHR-"):
        c["archetype_details"] = {"_type": "ARCHETYPED", "archetype_id": {"_type": "ARCHETYPE_ID", "value": node},
                                  "rm_version": "1.0.4"}
    return c


def q(m, u):
    return {"_type": "DV_QUANTITY", "magnitude": float(m), "units": u}


def dur(v):
    return {"_type": "DV_DURATION", "value": v}


def daily(*items):
    return _cl("openEHR-EHR-CLUSTER.timing_daily.v1", "Timing - daily", list(items))


def nondaily(*items):
    return _cl("openEHR-EHR-CLUSTER.timing_nondaily.v1", "Timing - non-daily", list(items))


def dosage(*items, version="v2"):
    return _cl(f"openEHR-EHR-CLUSTER.dosage.{version}", "Dosage", list(items))


def event_named(code, offset=None):
    items = [_el("at0026", "Event name", {"_type": "DV_TEXT", "value": code})]
    if offset:
        items.append(_el("at0040", "Time offset", dur(offset)))
    return _cl("at0039", "Specific event", items)


def _wrap(entry):
    return {"_type": "COMPOSITION", "name": {"_type": "DV_TEXT", "value": "Medication"},
            "uid": {"_type": "OBJECT_VERSION_ID", "value": UID},
            "archetype_node_id": "openEHR-EHR-COMPOSITION.encounter.v1",
            "language": dt.code_phrase("ISO_639-1", "en"), "territory": dt.code_phrase("ISO_3166-1", "DE"),
            "category": dt.coded_text("event", "openehr", "433"), "composer": {"_type": "PARTY_SELF"},
            "content": [entry]}


def statement(*clusters, time="2025-03-01T09:30:00+01:00"):
    e = entry_skeleton(registry()[STATEMENT], "en")
    items = [_el("at0006", "Medication name", {"_type": "DV_TEXT", "value": "Paclitaxel"})] + list(clusters)
    e["data"] = {"_type": "HISTORY", "name": {"_type": "DV_TEXT", "value": "History"}, "archetype_node_id": "at0001",
                 "origin": {"_type": "DV_DATE_TIME", "value": time},
                 "events": [{"_type": "POINT_EVENT", "name": {"_type": "DV_TEXT", "value": "Any event"},
                             "archetype_node_id": "at0002", "time": {"_type": "DV_DATE_TIME", "value": time},
                             "data": {"_type": "ITEM_TREE", "name": {"_type": "DV_TEXT", "value": "Tree"},
                                      "archetype_node_id": "at0003", "items": items}}]}
    return _wrap(e)


def order(*direction_items):
    e = entry_skeleton(registry()[ORDER], "en")
    e["narrative"] = {"_type": "DV_TEXT", "value": "Paclitaxel"}
    items = [_el("at0070", "Medication item", {"_type": "DV_TEXT", "value": "Paclitaxel"}),
             _cl("openEHR-EHR-CLUSTER.therapeutic_direction.v1", "Therapeutic direction", list(direction_items))]
    e["activities"] = [{"_type": "ACTIVITY", "name": {"_type": "DV_TEXT", "value": "Order"}, "archetype_node_id": "at0001",
                        "description": {"_type": "ITEM_TREE", "name": {"_type": "DV_TEXT", "value": "Tree"},
                                        "archetype_node_id": "at0002", "items": items},
                        "action_archetype_id": "openEHR-EHR-ACTION.medication.v1"}]
    return _wrap(e)


def administration(*items, time="2025-03-01T12:00:00.000+01:00"):
    e = entry_skeleton(registry()[ACTION], "en")
    e["time"] = {"_type": "DV_DATE_TIME", "value": time}
    e["description"] = {"_type": "ITEM_TREE", "name": {"_type": "DV_TEXT", "value": "Tree"}, "archetype_node_id": "at0017",
                        "items": [_el("at0020", "Medication item", {"_type": "DV_TEXT", "value": "Paclitaxel"})]
                        + list(items)}
    e["ism_transition"] = {"_type": "ISM_TRANSITION", "current_state": dt.coded_text("completed", "openehr", "532"),
                           "careflow_step": dt.coded_text("Medication course completed", "local", "at0007")}
    return _wrap(e)


def _fwd(comp, rt):
    return [r for r in to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources
            if r["resourceType"] == rt]


def _round_trip(comp, rt):
    """The resources, checked: valid, back to the same openEHR content, forward again the same FHIR."""
    res = _fwd(comp, rt)
    assert res and all(validate_fhir(r) == [] for r in res)
    back = to_openehr(res, template_id="t")
    assert compare_clinical({"content": comp["content"]}, {"content": back["content"]}) == []
    again = _fwd({**copy.deepcopy(back), "uid": comp["uid"]}, rt)
    assert [compare_clinical(a, b) for a, b in zip(res, again)] == [[]] * len(res)
    return res


# ------------------------------------------------------------------ timing (statement: dosage.v2 inline)
@pytest.mark.parametrize("timing,repeat", [
    (daily(_el("at0003", "Frequency", q(3, "1/d"))), {"frequency": 3, "period": 1, "periodUnit": "d"}),
    (daily(_el("at0014", "Interval", dur("PT8H"))), {"frequency": 1, "period": 8, "periodUnit": "h"}),
    (daily(_el("at0003", "Frequency", {"_type": "DV_INTERVAL", "lower": q(2, "1/d"), "upper": q(3, "1/d"),
                                       "lower_included": True, "upper_included": True, "lower_unbounded": False,
                                       "upper_unbounded": False})),
     {"frequency": 2, "frequencyMax": 3, "period": 1, "periodUnit": "d"}),
    (daily(_el("at0003", "Frequency", q(2, "1/d")), _el("at0004", "Specific time", {"_type": "DV_TIME", "value": "08:00:00"}),
           _el("at0004", "Specific time", {"_type": "DV_TIME", "value": "20:00:00"})),
     {"frequency": 2, "period": 1, "periodUnit": "d", "timeOfDay": ["08:00:00", "20:00:00"]}),
    (daily(_el("at0003", "Frequency", q(1, "1/d")), event_named("CD")),  # the KDS example: "mittags"
     {"frequency": 1, "period": 1, "periodUnit": "d", "when": ["CD"]}),
    (daily(event_named("ACM", "PT30M"), event_named("ACV", "PT30M")), {"when": ["ACM", "ACV"], "offset": 30}),
    (nondaily(_el("at0002", "Repetition interval", dur("P3W"))), {"frequency": 1, "period": 3, "periodUnit": "wk"}),
    (nondaily(_el("at0014", "Frequency", q(2, "1/wk")), _el("at0003", "Specific day of week",
                                                            dt.coded_text("Monday", "local", "at0007")),
              _el("at0003", "Specific day of week", dt.coded_text("Thursday", "local", "at0017"))),
     {"frequency": 2, "period": 1, "periodUnit": "wk", "dayOfWeek": ["mon", "thu"]}),
])
def test_timing_clusters_and_timing_repeat_both_ways(timing, repeat):
    [ms] = _round_trip(statement(dosage(timing)), "MedicationStatement")
    assert ms["dosage"][0]["timing"]["repeat"] == repeat


def test_a_specific_date_is_a_timing_event():
    [ms] = _round_trip(statement(dosage(nondaily(_el("at0001", "Specific date", {"_type": "DV_DATE",
                                                                                    "value": "2024-02-16"})))),
                       "MedicationStatement")
    assert ms["dosage"][0]["timing"] == {"event": ["2024-02-16"]}


@pytest.mark.parametrize("items,expected", [
    ([_el("at0024", "As required", {"_type": "DV_BOOLEAN", "value": True})], {"asNeededBoolean": True}),
    ([_el("at0024", "As required", {"_type": "DV_BOOLEAN", "value": True}),
      _el("at0025", "'As required' criterion", dt.coded_text("Pain", "SNOMED-CT", "22253000"))],
     {"asNeededCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "22253000",
                                              "display": "Pain"}], "text": "Pain"}}),
    ([_el("at0025", "'As required' criterion", {"_type": "DV_TEXT", "value": "for nausea"})],
     {"asNeededCodeableConcept": {"text": "for nausea"}}),
])
def test_as_required_is_as_needed(items, expected):
    [ms] = _round_trip(statement(dosage(daily(*items))), "MedicationStatement")
    got = {k: v for k, v in ms["dosage"][0].items() if k.startswith("asNeeded")}
    assert got == expected


def test_an_event_name_that_is_no_event_timing_code_stays_in_the_residue():
    [ms] = _round_trip(statement(dosage(daily(_el("at0003", "Frequency", q(1, "1/d")), event_named("mittags")))),
                       "MedicationStatement")
    assert ms["dosage"][0]["timing"]["repeat"] == {"frequency": 1, "period": 1, "periodUnit": "d"}


def test_times_and_named_events_together_stay_in_the_residue():
    """FHIR tim-10: a repeat has timeOfDay or when, not both; keeping one would drop administrations."""
    [ms] = _round_trip(statement(dosage(daily(_el("at0003", "Frequency", q(2, "1/d")), event_named("ACM"),
                                              _el("at0004", "Specific time", {"_type": "DV_TIME",
                                                                              "value": "20:00:00"})))),
                       "MedicationStatement")
    assert ms["dosage"][0]["timing"]["repeat"] == {"frequency": 2, "period": 1, "periodUnit": "d"}


@pytest.mark.parametrize("events", [[event_named("CD", "PT30M")],  # tim-9: no offset at a meal
                                    [event_named("ACM", "PT30M"), event_named("ACV", "PT15M")]])  # one offset only
def test_offsets_fhir_cannot_say_keep_their_events_in_the_residue(events):
    [ms] = _round_trip(statement(dosage(_el("at0144", "Dose amount", q(1, "1")), daily(*events))),
                       "MedicationStatement")
    assert "timing" not in ms["dosage"][0] and ms["dosage"][0]["doseAndRate"]


@pytest.mark.parametrize("clusters", [
    # three times a day, every third week: one Timing.repeat cannot say it
    [daily(_el("at0003", "Frequency", q(3, "1/d"))), nondaily(_el("at0002", "Repetition interval", dur("P3W")))],
    # two daily schedules in one dosage
    [daily(_el("at0003", "Frequency", q(1, "1/d"))), daily(_el("at0004", "Specific time", {"_type": "DV_TIME",
                                                                                          "value": "20:00:00"}))],
])
def test_timing_one_repeat_cannot_hold_is_not_claimed_in_part(clusters):
    [ms] = _round_trip(statement(dosage(*clusters)), "MedicationStatement")
    assert "timing" not in ms.get("dosage", [{}])[0]


# ------------------------------------------------------------------ dose and rate
def test_a_dose_over_a_duration_is_a_rate_ratio():
    """175 mg over 3 h: dose amount + administration duration <-> doseQuantity + rateRatio 175 mg / 3 h."""
    [ms] = _round_trip(statement(dosage(_el("at0144", "Dose amount", q(175, "mg")),
                                        _el("at0102", "Administration duration", dur("PT3H")))), "MedicationStatement")
    [dr] = ms["dosage"][0]["doseAndRate"]
    assert dr["doseQuantity"] == {"value": 175.0, "unit": "mg", "system": UCUM, "code": "mg"}
    assert dr["rateRatio"] == {"numerator": dr["doseQuantity"],
                               "denominator": {"value": 3, "unit": "h", "system": UCUM, "code": "h"}}


@pytest.mark.parametrize("rate,key,value", [
    (q(50, "ml/h"), "rateQuantity", {"value": 50.0, "unit": "ml/h", "system": UCUM, "code": "ml/h"}),
    (q(175, "mg/(3.h)"), "rateRatio", {"numerator": {"value": 175.0, "unit": "mg", "system": UCUM, "code": "mg"},
                                       "denominator": {"value": 3, "unit": "h", "system": UCUM, "code": "h"}}),
])
def test_administration_rate(rate, key, value):
    [ms] = _round_trip(statement(dosage(_el("at0134", "Administration rate", rate))), "MedicationStatement")
    assert ms["dosage"][0]["doseAndRate"] == [{key: value}]


def test_a_dose_range():
    rng = {"_type": "DV_INTERVAL", "lower": q(1, "1"), "upper": q(2, "1"), "lower_included": True,
           "upper_included": True, "lower_unbounded": False, "upper_unbounded": False}
    [ms] = _round_trip(statement(dosage(_el("at0144", "Dose amount", rng))), "MedicationStatement")
    assert ms["dosage"][0]["doseAndRate"][0]["doseRange"]["high"]["value"] == 2.0


def test_a_duration_without_dose_is_the_repeat_duration():
    [ms] = _round_trip(statement(dosage(_el("at0134", "Administration rate", q(50, "ml/h")),
                                        _el("at0102", "Administration duration", dur("PT2H")))), "MedicationStatement")
    assert ms["dosage"][0]["timing"]["repeat"] == {"duration": 2, "durationUnit": "h"}


# ------------------------------------------------------------------ administration
def test_administration_period_and_rate_ratio():
    """The MII example's shape: 1500 mg as a 30-minute infusion ending at ACTION.time."""
    comp = administration(dosage(_el("at0144", "Dose amount", q(1500, "mg")),
                                 _el("at0102", "Administration duration", dur("PT30M"))))
    [ma] = _round_trip(comp, "MedicationAdministration")
    assert ma["effectivePeriod"] == {"start": "2025-03-01T11:30:00.000+01:00", "end": "2025-03-01T12:00:00.000+01:00"}
    assert ma["dosage"]["rateRatio"]["denominator"] == {"value": 30, "unit": "min", "system": UCUM, "code": "min"}


def test_administration_without_duration_is_a_point_in_time():
    [ma] = _round_trip(administration(dosage(_el("at0134", "Administration rate", q(50, "ml/h")))),
                       "MedicationAdministration")
    assert ma["effectiveDateTime"] == "2025-03-01T12:00:00.000+01:00" and "effectivePeriod" not in ma
    assert ma["dosage"]["rateQuantity"]["code"] == "ml/h"


def _ma(**kw):
    return {"resourceType": "MedicationAdministration", "id": "m", "status": "completed",
            "subject": {"reference": "Patient/1"}, "medicationCodeableConcept": {"text": "Paclitaxel"}, **kw}


def _fhir_round_trip(resource):
    out = from_fhir([resource], template_id="t")
    comp = {**copy.deepcopy(out.composition), "uid": {"value": UID}}
    [twin] = _fwd(comp, resource["resourceType"])
    assert validate_fhir(twin) == []
    return out, strip(twin)


def test_fhir_born_rate_ratio_of_the_dose_and_period_agree():
    mg = {"value": 175, "unit": "mg", "system": UCUM, "code": "mg"}
    ma = _ma(effectivePeriod={"start": "2025-03-01T09:00:00+01:00", "end": "2025-03-01T12:00:00+01:00"},
             dosage={"dose": mg, "rateRatio": {"numerator": mg, "denominator": {"value": 3, "unit": "h",
                                                                                "system": UCUM, "code": "h"}}})
    out, twin = _fhir_round_trip(ma)
    assert [x for x in out.losses if x.kind == "dropped"] == []
    assert [d for d in compare_clinical(ma, twin) if d["kind"] != "dictionary_item_added"] == []
    assert twin["effectivePeriod"] == ma["effectivePeriod"] and twin["dosage"] == ma["dosage"]


def test_fhir_born_rate_ratio_that_is_not_the_dose_is_a_ratio_unit():
    ratio = {"numerator": {"value": 5, "unit": "mg", "system": UCUM, "code": "mg"},
             "denominator": {"value": 1, "unit": "h", "system": UCUM, "code": "h"}}
    ma = _ma(effectiveDateTime="2025-03-01T12:00:00+01:00",
             dosage={"dose": {"value": 175, "unit": "mg", "system": UCUM, "code": "mg"}, "rateRatio": ratio})
    out, twin = _fhir_round_trip(ma)
    entry = out.composition["content"][0]
    [dose] = [c for c in entry["description"]["items"] if c["archetype_node_id"] == "openEHR-EHR-CLUSTER.dosage.v2"]
    assert [i["value"] for i in dose["items"] if i["archetype_node_id"] == "at0134"] == [
        {"_type": "DV_QUANTITY", "magnitude": 5, "units": "mg/(1.h)"}]
    assert twin["dosage"]["rateRatio"] == ratio


def test_a_period_that_disagrees_with_the_rate_is_reported():
    mg = {"value": 175, "unit": "mg", "system": UCUM, "code": "mg"}
    ma = _ma(effectivePeriod={"start": "2025-03-01T10:00:00+01:00", "end": "2025-03-01T12:00:00+01:00"},
             dosage={"dose": mg, "rateRatio": {"numerator": mg, "denominator": {"value": 3, "unit": "h",
                                                                                "system": UCUM, "code": "h"}}})
    out, twin = _fhir_round_trip(ma)
    assert twin["dosage"]["rateRatio"] == ma["dosage"]["rateRatio"]  # the rate wins
    # the sender's period is no loss: kept in the feeder audit and given back as sent (issue 21)
    assert twin["effectivePeriod"] == ma["effectivePeriod"] and out.losses == []


# ------------------------------------------------------------------ order (therapeutic direction)
def test_order_direction_timing_and_as_needed():
    comp = order(_el("at0057", "Direction sequence", {"_type": "DV_COUNT", "magnitude": 1}),
                 dosage(_el("at0144", "Dose amount", q(1, "1")),
                        daily(_el("at0014", "Interval", dur("PT6H")),
                              _el("at0024", "As required", {"_type": "DV_BOOLEAN", "value": True})), version="v1"))
    [mr] = _round_trip(comp, "MedicationRequest")
    [d] = mr["dosageInstruction"]
    assert d["timing"]["repeat"] == {"frequency": 1, "period": 6, "periodUnit": "h"} and d["asNeededBoolean"] is True


def test_order_direction_with_timed_doses_in_two_dosage_clusters_claims_no_timing():
    """1 tablet at 08:00 and 2 at 20:00: one Dosage.timing would give both doses one schedule."""
    comp = order(dosage(_el("at0144", "Dose amount", q(1, "1")),
                        daily(_el("at0004", "Specific time", {"_type": "DV_TIME", "value": "08:00:00"})), version="v1"),
                 dosage(_el("at0144", "Dose amount", q(2, "1")),
                        daily(_el("at0004", "Specific time", {"_type": "DV_TIME", "value": "20:00:00"})), version="v1"))
    [mr] = _round_trip(comp, "MedicationRequest")
    assert "timing" not in mr["dosageInstruction"][0]


def test_fhir_born_order_keeps_frequency_when_and_as_needed():
    mr = {"resourceType": "MedicationRequest", "id": "r", "status": "active", "intent": "order",
          "subject": {"reference": "Patient/1"}, "medicationCodeableConcept": {"text": "Metamizole"},
          "requester": {"display": "Dr. A"},
          "dosageInstruction": [{"timing": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d",
                                                       "when": ["PC"], "offset": 15}},
                                 "asNeededCodeableConcept": {"text": "pain"},
                                 "doseAndRate": [{"doseQuantity": {"value": 500, "unit": "mg", "system": UCUM,
                                                                   "code": "mg"}}]}]}
    out, twin = _fhir_round_trip(mr)
    assert [x for x in out.losses if x.kind == "dropped"] == []
    assert twin["dosageInstruction"] == mr["dosageInstruction"]


# ------------------------------------------------------------------ generated timings
@st.composite
def timings(draw):
    items = []
    if draw(st.booleans()):
        items.append(_el("at0003", "Frequency", q(draw(st.integers(1, 6)), draw(st.sampled_from(["1/d", "1/h"])))))
    elif draw(st.booleans()):
        items.append(_el("at0014", "Interval", dur(draw(st.sampled_from(["PT4H", "PT8H", "PT12H", "PT30M"])))))
    for t in draw(st.lists(st.sampled_from(["08:00:00", "12:30:00", "20:00:00", "22:15"]), max_size=3, unique=True)):
        items.append(_el("at0004", "Specific time", {"_type": "DV_TIME", "value": t}))
    off = draw(st.sampled_from([None, "PT30M", "PT1H"]))
    for code in draw(st.lists(st.sampled_from(["AC", "PC", "HS", "MORN", "CD", "morgens"]), max_size=2, unique=True)):
        items.append(event_named(code, off))
    if draw(st.booleans()):
        items.append(_el("at0024", "As required", {"_type": "DV_BOOLEAN", "value": True}))
    if draw(st.booleans()):
        items.append(_el("at0025", "'As required' criterion", {"_type": "DV_TEXT", "value": draw(
            st.sampled_from(["pain", "nausea"]))}))
    clusters = [daily(*items)] if items else []
    if draw(st.booleans()):
        non = [_el("at0002", "Repetition interval", dur(draw(st.sampled_from(["P3W", "P2D", "P1M"]))))] \
            if draw(st.booleans()) else []
        for day in draw(st.lists(st.sampled_from(["at0007", "at0016", "at0018"]), max_size=2, unique=True)):
            non.append(_el("at0003", "Specific day of week", dt.coded_text("day", "local", day)))
        if non:
            clusters.append(nondaily(*non))
    dose = [_el("at0144", "Dose amount", q(draw(st.integers(1, 500)), "mg"))] if draw(st.booleans()) else []
    if draw(st.booleans()):
        dose.append(_el("at0102", "Administration duration", dur(draw(st.sampled_from(["PT30M", "PT3H"])))))
    return statement(dosage(*(dose + clusters))) if dose + clusters else statement()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timings())
def test_generated_dosages_round_trip(comp):
    _round_trip(comp, "MedicationStatement")


# ------------------------------------------------------------------ HAPI
@pytest.mark.integration
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(timings())
def test_hapi_validates_generated_dosages(fhir_base_url, comp):
    [ms] = _fwd(comp, "MedicationStatement")
    assert hapi_errors(fhir_base_url, ms) == []


@pytest.mark.integration
def test_hapi_validates_the_dosage_shapes(fhir_base_url):
    comps = [statement(dosage(daily(_el("at0003", "Frequency", q(2, "1/d")), event_named("ACM", "PT30M"),
                                    _el("at0025", "'As required' criterion", {"_type": "DV_TEXT", "value": "pain"})),
                              _el("at0144", "Dose amount", q(175, "mg")),
                              _el("at0102", "Administration duration", dur("PT3H")))),
             statement(dosage(nondaily(_el("at0014", "Frequency", q(2, "1/wk")),
                                       _el("at0003", "Specific day of week", dt.coded_text("Monday", "local", "at0007")),
                                       _el("at0001", "Specific date", {"_type": "DV_DATE", "value": "2024-02-16"})),
                              _el("at0134", "Administration rate", q(175, "mg/(3.h)")))),
             administration(dosage(_el("at0144", "Dose amount", q(1500, "mg")),
                                   _el("at0102", "Administration duration", dur("PT30M")))),
             order(dosage(_el("at0144", "Dose amount", q(1, "1")),
                          daily(_el("at0014", "Interval", dur("PT6H")),
                                _el("at0024", "As required", {"_type": "DV_BOOLEAN", "value": True})), version="v1"))]
    checked = 0
    for comp in comps:
        for r in to_fhir(comp, site="s", ehr_id="e", patient_ref="Patient/1").resources:
            if r["resourceType"] in ("MedicationStatement", "MedicationAdministration", "MedicationRequest"):
                assert hapi_errors(fhir_base_url, r) == [], r["resourceType"]
                checked += 1
    assert checked == 4
