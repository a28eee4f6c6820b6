"""Hooks of the laboratory row's structure: panels, specimens, reference ranges.

* ``reportStatus``: a panel's grouping Observation has no status of its own in openEHR; it takes the
  status of the report (or enclosing panel) holding it, the "overall test status" of the result as a
  whole (one way: nothing to read back);
* ``specimenReferences``: every result Observation of a report, panel members included, references the
  report's Specimen its analyte names (at0026 = the Specimen's identifier), or the report's only
  Specimen when it names none (one way: the structure says it, the reverse reads DiagnosticReport.specimen);
* ``referenceRange``: DV_QUANTITY.normal_range / other_reference_ranges <-> Observation.referenceRange;
* ``dateTimeInterval``: DV_INTERVAL<DV_DATE_TIME> <-> Period (specimen collection time);
* ``firstResult``: an analyte with several results (at0001 is 0..*) has the first one's value only (one way);
* the report's performer (the lab) is hooks_performer.py's ``entryPerformer``, shared with every row.
"""
from __future__ import annotations

from . import datatypes as dt
from . import fhirpath, rmpath
from .runtime import FWD, f_base, o_base
from .terminology import SOURCE_SYSTEM

RANGE_MEANING = "http://terminology.hl7.org/CodeSystem/referencerange-meaning"
NORMAL = {"coding": [{"system": RANGE_MEANING, "code": "normal", "display": "Normal Range"}]}


def report_status(ctx, rule, onode, fobj, fmodel, direction):
    """Observation.status (1..1) of a panel: the status of the resource holding it (see module doc)."""
    if direction == FWD:
        ctx.resource["status"] = (ctx.parent or {}).get("status") or "unknown"


def lone_result_test_name(ctx, rule, onode, fobj, fmodel, direction):
    """A laboratory result sent alone (an Observation no report names: no DiagnosticReport.code to give the
    mandatory test name at0005) is a test of its own: its code names the test.  Only for that case (the
    report the reverse mapping stands in is ours, without a code); a sent report's code is the test name rule's."""
    if direction == FWD or ctx.resource.get("code"):
        return
    refs = [r.get("reference") for r in ctx.resource.get("result") or [] if isinstance(r, dict)]
    only = ctx.unit.by_ref.get(refs[0]) if len(refs) == 1 else None
    obase, osteps = o_base(ctx, rule.openehr, onode)
    if only is None or not isinstance(only.get("code"), dict) or rmpath.find(obase, osteps):
        return
    rmpath.ensure(obase, osteps)["value"] = dt.cc_to_dv(only["code"])


# ------------------------------------------------------------------ specimens
def _ref(res: dict) -> str:
    return f"{res.get('resourceType')}/{res.get('id')}"


def _results(report: dict, by_ref: dict) -> list[dict]:
    """The report's result Observations, then (breadth first) the members of those that are panels."""
    out, seen = [], set()
    queue = [r.get("reference") for r in report.get("result") or []]
    while queue:
        ref = queue.pop(0)
        obs = by_ref.get(ref)
        if obs is None or ref in seen:
            continue
        seen.add(ref)
        out.append(obs)
        queue.extend(m.get("reference") for m in obs.get("hasMember") or [])
    return out


def _identifiers(specimen: dict) -> list[tuple]:
    idents = [specimen.get("accessionIdentifier") or {}] + [i for i in specimen.get("identifier") or []
                                                           if i.get("system") != SOURCE_SYSTEM]
    return [(i.get("system"), i.get("value")) for i in idents if i.get("value")]


def _specimen_for(obs: dict, specimens: list[dict]) -> dict | None:
    """The Specimen whose identifier the result names; without a name, the report's only Specimen.
    A name no Specimen (or more than one) carries links none: the result was made on another one."""
    named = (obs.get("specimen") or {}).get("identifier")
    if named:
        key = (named.get("system"), named.get("value"))
        hits = [s for s in specimens if key in _identifiers(s)]
        return hits[0] if len(hits) == 1 else None
    return specimens[0] if len(specimens) == 1 else None


def specimen_references(ctx, rule, onode, fobj, fmodel, direction):
    """Observation.specimen of each result of the report (see module doc)."""
    if direction != FWD:
        return
    by_ref = {_ref(r): r for r in ctx.unit.resources}
    specimens = [by_ref[s.get("reference")] for s in ctx.resource.get("specimen") or []
                 if s.get("reference") in by_ref]
    if not specimens:
        return
    for obs in _results(ctx.resource, by_ref):
        target = _specimen_for(obs, specimens)
        if target is not None:
            obs["specimen"] = {"reference": _ref(target), **(obs.get("specimen") or {})}


# ------------------------------------------------------------------ reference ranges
def _interval_to_range(iv: dict) -> dict:
    rr = {}
    if not iv.get("lower_unbounded") and isinstance(iv.get("lower"), dict):
        rr["low"] = dt.quantity_to_fhir(iv["lower"])
    if not iv.get("upper_unbounded") and isinstance(iv.get("upper"), dict):
        rr["high"] = dt.quantity_to_fhir(iv["upper"])
    return rr


def _range_to_interval(rr: dict) -> dict:
    """FHIR low/high are inclusive bounds; a missing one is unbounded."""
    low, high = rr.get("low"), rr.get("high")
    iv = {"_type": "DV_INTERVAL", "lower_unbounded": low is None, "upper_unbounded": high is None,
          "lower_included": low is not None, "upper_included": high is not None}
    if low is not None:
        iv["lower"] = dt.quantity_to_dv(low)
    if high is not None:
        iv["upper"] = dt.quantity_to_dv(high)
    return iv


def _is_normal(rr: dict) -> bool:
    """No type means the normal range (FHIR R4 Observation.referenceRange.type)."""
    codings = (rr.get("type") or {}).get("coding") or []
    return not rr.get("type") or any(c.get("system") == RANGE_MEANING and c.get("code") == "normal" for c in codings)


def reference_range(ctx, rule, onode, fobj, fmodel, direction):
    """The analyte's DV_QUANTITY result: normal_range <-> referenceRange typed 'normal' (FHIR: no type =
    normal), each other_reference_ranges item <-> a referenceRange whose type is its meaning.  Ranges
    without low/high (text, age, appliesTo only) and ranges of a result that is no DV_QUANTITY have no
    home in openEHR and are reported lost; a second untyped range too."""
    obase, osteps = o_base(ctx, rule.openehr, onode)
    fbase, fbmodel, fpath = f_base(ctx, rule.fhir, fobj, fmodel)
    elements = [e for e in rmpath.find(obase, osteps) if dt.dv_type((e or {}).get("value") or {}) == "DV_QUANTITY"]
    if direction == FWD:
        if not elements:
            return
        dv = elements[0]["value"]
        if isinstance(dv.get("normal_range"), dict):
            fhirpath.put(fbase, fbmodel, fpath, {**_interval_to_range(dv["normal_range"]), "type": rmpath.jcopy(NORMAL)})
        for other in dv.get("other_reference_ranges") or []:
            meaning = other.get("meaning") or {}
            typ = dt.coded_to_fhir(meaning) if dt.dv_type(meaning) == "DV_CODED_TEXT" else {"text": meaning.get("value")}
            fhirpath.put(fbase, fbmodel, fpath, {**_interval_to_range(other.get("range") or {}), "type": typ})
        return
    if not elements:
        return
    dv = elements[0]["value"]
    for rr in fhirpath.get_values(fbase, fpath):
        if not isinstance(rr, dict) or (rr.get("low") is None and rr.get("high") is None):
            continue
        if _is_normal(rr):
            if "normal_range" not in dv:
                dv["normal_range"] = _range_to_interval(rr)
        elif rr.get("type"):
            dv.setdefault("other_reference_ranges", []).append(
                {"_type": "REFERENCE_RANGE", "meaning": dt.cc_to_dv(rr["type"]), "range": _range_to_interval(rr)})


# ------------------------------------------------------------------ DV_INTERVAL<DV_DATE_TIME>
def date_time_interval(ctx, rule, onode, fobj, fmodel, direction):
    """An element whose value is DV_INTERVAL<DV_DATE_TIME> <-> Period (start = lower, end = upper, both
    inclusive in FHIR; an unbounded side is absent).  A DV_DATE_TIME value is a plain DATETIME rule's."""
    obase, osteps = o_base(ctx, rule.openehr, onode)
    fbase, fbmodel, fpath = f_base(ctx, rule.fhir, fobj, fmodel)
    if direction == FWD:
        for el in rmpath.find(obase, osteps):
            iv = (el or {}).get("value") or {}
            if iv.get("_type") != "DV_INTERVAL":
                continue
            period = {}
            if not iv.get("lower_unbounded") and (iv.get("lower") or {}).get("value"):
                period["start"] = dt.datetime_to_fhir(iv["lower"]["value"])
            if not iv.get("upper_unbounded") and (iv.get("upper") or {}).get("value"):
                period["end"] = dt.datetime_to_fhir(iv["upper"]["value"])
            if period:
                fhirpath.put(fbase, fbmodel, fpath, period)
        return
    for period in fhirpath.get_values(fbase, fpath):
        start, end = (period or {}).get("start"), (period or {}).get("end")
        if not (start or end):
            continue
        iv = {"_type": "DV_INTERVAL", "lower_unbounded": not start, "upper_unbounded": not end,
              "lower_included": bool(start), "upper_included": bool(end)}
        if start:
            iv["lower"] = {"_type": "DV_DATE_TIME", "value": start}
        if end:
            iv["upper"] = {"_type": "DV_DATE_TIME", "value": end}
        rmpath.ensure(obase, osteps, fresh_last=True)["value"] = iv


# ------------------------------------------------------------------ one result per analyte Observation
def first_result(ctx, rule, onode, fobj, fmodel, direction):
    """Observation.value[x] and dataAbsentReason are 0..1 and exclusive (obs-6); the analyte's result
    (at0001) is 0..*.  The first result element gives the Observation's value (or its absence); the
    value rules' output from any other one is taken out again and travels in the residue."""
    if direction != FWD:
        return
    obase, osteps = o_base(ctx, rule.openehr, onode)
    first = next(iter(rmpath.find(obase, osteps)), None)
    present = [k for k in fobj if k.startswith("value") and k[5:6].isupper()] + \
        (["dataAbsentReason"] if "dataAbsentReason" in fobj else [])
    if first is None or len(present) < 2:
        return
    if isinstance(first.get("value"), dict):
        try:
            keep = "value" + dt.dv_to_value(first["value"])[0]
        except KeyError:  # no standard FHIR form: nothing of it was written, keep nothing
            keep = None
    else:
        keep = "dataAbsentReason" if first.get("null_flavour") else None
    for k in present:
        if k != keep:
            del fobj[k]
