"""Hooks (``mappingCode``) of the OBSERVATION rows: event times and the single-result lab report.

* ``eventTime``: EVENT.time/width/math_function <-> effective[x] (laboratory rows);
* ``pointEventTime``: the same for profiles whose effective[x] must be a dateTime (vital signs);
* ``collapseSingleResult``: a lab report with exactly one result is sent as that Observation alone.
"""
from __future__ import annotations

from . import datatypes as dt
from . import fhirpath, terminology

MATH_EXT = terminology.SD_BASE + "openehr-math-function"
WIDTH_EXT = terminology.SD_BASE + "openehr-event-width"


def event_time(ctx, rule, onode, fobj, fmodel, direction):
    """EVENT.time/width/math_function <-> effective[x].  A POINT_EVENT is effectiveDateTime; an
    INTERVAL_EVENT is effectivePeriod (end = time, start = time - width) and its math function
    goes to the openehr-math-function extension, because FHIR has no element for it."""
    event = ctx.event
    if event is None:
        return
    res = ctx.resource
    if direction == "openehr->fhir":
        t = (event.get("time") or {}).get("value")
        if not t:
            return
        width = (event.get("width") or {}).get("value")
        if width or event.get("_type") == "INTERVAL_EVENT":
            end = dt.datetime_to_fhir(t)
            period = {"end": end}
            td, end_dt = dt.parse_duration(width or ""), dt.parse_dt(end)
            if td is not None and end_dt is not None:
                period["start"] = dt.format_dt(end_dt - td)
            res["effectivePeriod"] = period
            mf = event.get("math_function")
            if mf:
                res.setdefault("extension", []).append({"url": MATH_EXT, "valueCoding":
                                                        dt.coded_to_fhir(mf)["coding"][0]})
        else:
            res["effectiveDateTime"] = dt.datetime_to_fhir(t)
        return
    if event.get("time"):
        return  # another resource of the same event already set it
    _event_time_back(event, res)
    _origin(ctx, event)


def _origin(ctx, event) -> None:
    """HISTORY.origin (mandatory in the RM) from the event time when the FHIR side has none to give:
    exact for the usual single-event history; any other origin travels in the residue."""
    hist = ctx.archetype.get("data") if isinstance(ctx.archetype, dict) else None
    if isinstance(hist, dict) and "events" in hist and not hist.get("origin") and event.get("time"):
        hist["origin"] = {"_type": "DV_DATE_TIME", "value": event["time"]["value"]}


def _event_time_back(event, res) -> None:
    single = res.get("effectiveDateTime") or res.get("effectiveInstant")
    period = res.get("effectivePeriod") or {}
    if single:
        event["time"] = {"_type": "DV_DATE_TIME", "value": single}
        return
    start, end = period.get("start"), period.get("end")
    if start and end and dt.parse_dt(start) and dt.parse_dt(end):
        event["_type"] = "INTERVAL_EVENT"
        event["time"] = {"_type": "DV_DATE_TIME", "value": end}
        event["width"] = {"_type": "DV_DURATION",
                          "value": dt.format_duration(dt.parse_dt(end) - dt.parse_dt(start))}
        coding = next((e["valueCoding"] for e in res.get("extension") or [] if e.get("url") == MATH_EXT), None)
        event["math_function"] = dt.cc_to_dv({"coding": [coding]}) if coding else \
            dt.coded_text("actual", "openehr", "640")
    elif start or end:
        event["time"] = {"_type": "DV_DATE_TIME", "value": start or end}


def point_event_time(ctx, rule, onode, fobj, fmodel, direction):
    """eventTime for profiles whose effective[x] must be a dateTime (HAPI evaluates the vital-signs
    vs-1 invariant, ``($this as dateTime).toString().length() >= 8``, as failed on any Period).  An
    INTERVAL_EVENT gives effectiveDateTime = EVENT.time (the end of the interval, as in openEHR), its
    width in openehr-event-width (valueDuration, UCUM time unit) and its math function in
    openehr-math-function.  Read back: those extensions make an INTERVAL_EVENT again (math function
    640 actual when only the width came); a FHIR-born effectivePeriod is read as by eventTime."""
    event, res = ctx.event, ctx.resource
    if event is None:
        return
    if direction == "openehr->fhir":
        t = (event.get("time") or {}).get("value")
        if not t:
            return
        res["effectiveDateTime"] = dt.datetime_to_fhir(t)
        width = (event.get("width") or {}).get("value")
        if width and dt.parse_duration(width) is not None:
            q = dt.duration_to_fhir(width) or {"value": int(dt.parse_duration(width).total_seconds()), "unit": "s",
                                               "system": terminology.UCUM, "code": "s"}
            res.setdefault("extension", []).append({"url": WIDTH_EXT, "valueDuration": q})
        mf = event.get("math_function")
        if mf and (width or event.get("_type") == "INTERVAL_EVENT"):
            res.setdefault("extension", []).append({"url": MATH_EXT, "valueCoding": dt.coded_to_fhir(mf)["coding"][0]})
        return
    exts = {e.get("url"): e for e in res.get("extension") or []}
    if event.get("time") or not res.get("effectiveDateTime") or not (WIDTH_EXT in exts or MATH_EXT in exts):
        return event_time(ctx, rule, onode, fobj, fmodel, direction)
    event["_type"] = "INTERVAL_EVENT"
    event["time"] = {"_type": "DV_DATE_TIME", "value": res["effectiveDateTime"]}
    if WIDTH_EXT in exts:
        width = dt.duration_from_fhir(exts[WIDTH_EXT].get("valueDuration") or {})
        if width:
            event["width"] = {"_type": "DV_DURATION", "value": width}
    coding = (exts.get(MATH_EXT) or {}).get("valueCoding")
    event["math_function"] = dt.cc_to_dv({"coding": [coding]}) if coding else dt.coded_text("actual", "openehr", "640")
    _origin(ctx, event)


def _sent_as_report(entry) -> bool:
    """The entry is FHIR-born from a DiagnosticReport (its feeder audit names one): the sender's report with
    one result comes back as a report with one result, not collapsed into that result (issue 21)."""
    fa = entry.get("feeder_audit") if isinstance(entry, dict) else None
    ids = (fa or {}).get("originating_system_item_ids") or []
    return any(isinstance(i, dict) and str(i.get("id", "")).startswith("DiagnosticReport/") for i in ids)


def collapse_single_result(ctx, rule, onode, fobj, fmodel, direction):
    """A report with exactly one result is sent as that Observation alone (no DiagnosticReport):
    its report-level data then travel in the residue of the Observation, which takes the report's
    place (first of the group).  Not when the one result is a panel (an Observation with hasMember: a
    grouping Observation is no result on its own), nor when the report has a Specimen the result does
    not reference (nothing else would hold it)."""
    if direction != "openehr->fhir" or _sent_as_report(ctx.archetype):
        return
    refs = fhirpath.get_values(ctx.resource, "result")
    if len(refs) != 1 or ctx.resource not in ctx.unit.resources:
        return
    only = next((r for r in ctx.unit.resources
                 if f"{r.get('resourceType')}/{r.get('id')}" == (refs[0] or {}).get("reference")), None)
    specimens = {s.get("reference") for s in ctx.resource.get("specimen") or []}
    if only is None or only.get("hasMember") or not specimens <= {(only.get("specimen") or {}).get("reference")}:
        return
    at = ctx.unit.resources.index(ctx.resource)
    ctx.unit.resources.remove(ctx.resource)
    ctx.unit.resources.remove(only)
    ctx.unit.resources.insert(at, only)
    if ctx.resource.get("language"):
        only["language"] = ctx.resource["language"]  # the entry's language, read back from the lone result
