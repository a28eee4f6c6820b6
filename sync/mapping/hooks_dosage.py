"""Hooks (``mappingCode``) of the dosage clusters, written once and named by every medication row:
the order (INSTRUCTION.medication_order), the administration (ACTION.medication) and the statements
(OBSERVATION.medication_statement, through CLUSTER.dosage.v2's own file).

* ``doseAndRate``: CLUSTER.dosage.v1/v2 dose amount at0144, administration rate at0134 and
  administration duration at0102 <-> dose[x] / rate[x] of the FHIR object the rule names: a Dosage
  (its first doseAndRate entry), one Dosage.doseAndRate entry, or MedicationAdministration.dosage.

  - dose DV_QUANTITY <-> doseQuantity (``dose`` in an administration); DV_INTERVAL<DV_QUANTITY> with
    inclusive bounds <-> doseRange (an administration has no range: residue);
  - rate DV_QUANTITY <-> rateQuantity, except a UCUM ratio unit ``NUM/(N.DEN)`` (``mg/(3.h)``: 175 mg
    per 3 hours, exact UCUM) <-> rateRatio {numerator magnitude NUM, denominator N DEN};
    DV_INTERVAL<DV_QUANTITY> <-> rateRange (Dosage only);
  - administration duration (single unit) with a DV_QUANTITY dose and no rate <-> rateRatio
    {numerator = the dose, denominator = the duration}: "175 mg over 3 h".  Back, a rateRatio whose
    numerator is the dose (value and unit code) is that duration; another one is a ratio unit.  In a
    Dosage, a duration without a dose <-> timing.repeat.duration/durationUnit.
  - the human ``unit`` of a ratio's parts is not kept (the UCUM code is).

  With ``with.openehr`` (relative to the rule's node) and ``with.fhir`` the hook finds the first
  dosage cluster and the FHIR element itself (MedicationAdministration.dosage, created only when a
  value goes there); without them the rule's node is the cluster and its FHIR object the target.

* ``dosageTiming``: CLUSTER.timing_daily.v1 / timing_nondaily.v1 <-> Dosage.timing.repeat and
  Dosage.asNeeded[x].  The rule's node holds the timing clusters (a CLUSTER.dosage.v2), or, with
  ``with.openehr``, the node at that path does (the dosage cluster of a therapeutic direction) and
  the rule's node holds the non-daily one (the direction's repetition timing).

  - daily frequency at0003 ``n 1/u`` (u = s, min, h, d; an interval gives frequencyMax) <->
    frequency n, period 1, periodUnit u; interval at0014 (PT8H) <-> frequency 1, period 8, h;
  - non-daily repetition interval at0002 (P3W) <-> frequency 1, period 3, wk; frequency at0014
    ``n 1/wk|mo|a`` <-> frequency n, period 1, that unit; specific day of week at0003 (at-codes) <->
    dayOfWeek; specific date at0001 (DV_DATE) <-> timing.event;
  - specific time at0004 (DV_TIME) <-> timeOfDay (hh:mm:ss);
  - specific event at0039: event name at0026 that is an EventTiming code (FHIR's required value set;
    DV_TEXT as the MII KDS writes it, or DV_CODED_TEXT with an event-timing system) <-> when, one time
    offset at0040 shared by all events (minutes, >= 0) <-> offset;
  - as required at0024 / criterion at0025 <-> asNeededBoolean / asNeededCodeableConcept (a criterion
    implies "as required": back, a criterion also sets at0024 true).

  Only what one Timing.repeat can say is mapped: several daily or several non-daily clusters, daily
  and non-daily rhythms together ("3 times a day, every third week"), or timing clusters in more
  than one dosage cluster of a direction leave every timing cluster to the residue (no partial
  schedule is claimed).  Back, period units s/min/h, and d with period 1, are daily; longer periods
  are non-daily.  periodMax, count, bounds and other repeat elements have no home here (bounds:
  therapeutic direction, hook therapeuticDirectionBounds).
"""
from __future__ import annotations

import re

from . import datatypes as dt
from . import fhirmodel, fhirpath, rmpath, terminology
from .runtime import FWD, f_base, o_base
from .ucum import is_ucum

DAILY, NONDAILY = "openEHR-EHR-CLUSTER.timing_daily.", "openEHR-EHR-CLUSTER.timing_nondaily."
DAILY_ID, NONDAILY_ID = "openEHR-EHR-CLUSTER.timing_daily.v1", "openEHR-EHR-CLUSTER.timing_nondaily.v1"
DOSAGE_CLUSTERS = ("openEHR-EHR-CLUSTER.dosage.v1", "openEHR-EHR-CLUSTER.dosage.v2")
# FHIR R4 EventTiming (required binding of Timing.repeat.when): http://hl7.org/fhir/event-timing and
# http://terminology.hl7.org/CodeSystem/v3-TimingEvent
EVENT_TIMING = {"MORN", "MORN.early", "MORN.late", "NOON", "AFT", "AFT.early", "AFT.late", "EVE", "EVE.early",
                "EVE.late", "NIGHT", "PHS", "HS", "WAKE", "C", "CM", "CD", "CV", "AC", "ACM", "ACD", "ACV",
                "PC", "PCM", "PCD", "PCV", "IC", "ICM", "ICD", "ICV"}
EVENT_SYSTEMS = {"http://hl7.org/fhir/event-timing", "http://terminology.hl7.org/CodeSystem/v3-TimingEvent"}
# timing_nondaily.v1 specific day of week (local at-codes) <-> FHIR days-of-week
WEEKDAYS = {"at0007": ("mon", "Monday"), "at0008": ("tue", "Tuesday"), "at0016": ("wed", "Wednesday"),
            "at0017": ("thu", "Thursday"), "at0018": ("fri", "Friday"), "at0019": ("sat", "Saturday"),
            "at0020": ("sun", "Sunday")}
DAY_CODES = {v[0]: (k, v[1]) for k, v in WEEKDAYS.items()}
_RATIO = re.compile(r"^(?P<num>[^/()]+)/\((?P<n>\d+)\.(?P<den>[^()]+)\)$")
_TIME = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2}(?:\.\d+)?))?$")
_DAILY_UNITS, _LONG_UNITS = ("s", "min", "h", "d"), ("wk", "mo", "a")


# ------------------------------------------------------------------ small helpers
def _items(node) -> list[dict]:
    return [i for i in (node or {}).get("items") or [] if isinstance(i, dict)]


def _first(node, at: str):
    return next((i for i in _items(node) if i.get("archetype_node_id") == at), None)


def _value(node, at: str) -> dict | None:
    el = _first(node, at)
    v = (el or {}).get("value")
    return v if isinstance(v, dict) else None


def _add(node: dict, at: str, name: str, value: dict) -> dict:
    el = {"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": name}, "archetype_node_id": at, "value": value}
    node.setdefault("items", []).append(el)
    return el


def _cluster(node: dict, at: str, name: str) -> dict:
    c = {"_type": "CLUSTER", "name": {"_type": "DV_TEXT", "value": name}, "archetype_node_id": at, "items": []}
    if at.startswith("openEHR-"):
        c["archetype_details"] = {"_type": "ARCHETYPED", "archetype_id": {"_type": "ARCHETYPE_ID", "value": at},
                                  "rm_version": "1.0.4"}
    node.setdefault("items", []).append(c)
    return c


def _is(dv, rm: str) -> bool:
    return isinstance(dv, dict) and (dv.get("_type") == rm or (rm == "DV_QUANTITY" and dt.dv_type(dv) == rm))


def _num(v):
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _same_quantity(a: dict, b: dict) -> bool:
    return isinstance(a, dict) and isinstance(b, dict) and a.get("value") is not None \
        and float(a.get("value")) == float(b.get("value") or 0) and a.get("code") == b.get("code") \
        and a.get("system") == b.get("system")


# ------------------------------------------------------------------ dose and rate
def _range(iv: dict) -> dict | None:
    """DV_INTERVAL<DV_QUANTITY> -> Range (FHIR bounds are inclusive: an excluded bound has no home)."""
    if iv.get("lower_included") is False and iv.get("lower") or iv.get("upper_included") is False and iv.get("upper"):
        return None
    r = {}
    for side, key in (("lower", "low"), ("upper", "high")):
        q = iv.get(side)
        if _is(q, "DV_QUANTITY") and not iv.get(f"{side}_unbounded"):
            r[key] = dt.quantity_to_fhir(q)
    return r or None


def _interval(rng: dict) -> dict | None:
    iv = {"_type": "DV_INTERVAL"}
    for side, key in (("lower", "low"), ("upper", "high")):
        q = rng.get(key)
        if isinstance(q, dict) and q.get("value") is not None:
            iv[side] = dt.quantity_to_dv(q)
            iv[f"{side}_included"] = True
        iv[f"{side}_unbounded"] = side not in iv
    return iv if "lower" in iv or "upper" in iv else None


def _ratio_of_unit(dv: dict) -> dict | None:
    m = _RATIO.match(str(dv.get("units") or ""))
    if not m or not dt.in_ucum_system(dv) or not is_ucum(m["num"]) or not is_ucum(m["den"]):
        return None
    return {"numerator": {"value": dv["magnitude"], "unit": dt.human_unit(m["num"]), "system": terminology.UCUM,
                          "code": m["num"]},
            "denominator": {"value": int(m["n"]), "unit": dt.human_unit(m["den"]), "system": terminology.UCUM,
                            "code": m["den"]}}


def _unit_of_ratio(ratio: dict) -> dict | None:
    n, d = ratio.get("numerator") or {}, ratio.get("denominator") or {}
    if n.get("value") is None or d.get("value") is None or float(d["value"]) <= 0 \
            or not float(d["value"]).is_integer():
        return None
    if n.get("system") != terminology.UCUM or d.get("system") != terminology.UCUM:
        return None
    units = f"{n.get('code')}/({int(d['value'])}.{d.get('code')})"
    return {"_type": "DV_QUANTITY", "magnitude": n["value"], "units": units} if is_ucum(units) else None


def _keys(model: str) -> dict[str, str | None]:
    f = fhirmodel.fields(model)
    return {"dose": "doseQuantity" if "doseQuantity" in f else ("dose" if "dose" in f else None),
            "doseRange": "doseRange" if "doseRange" in f else None,
            "rateQuantity": "rateQuantity" if "rateQuantity" in f else None,
            "rateRatio": "rateRatio" if "rateRatio" in f else None,
            "rateRange": "rateRange" if "rateRange" in f else None}


def _dose_rate_fwd(cluster: dict, model: str) -> tuple[dict, str | None]:
    """(dose[x]/rate[x] for an object of ``model``, a duration left for timing.repeat.duration)."""
    k = _keys(model)
    out: dict = {}
    dose, rate, dur = _value(cluster, "at0144"), _value(cluster, "at0134"), _value(cluster, "at0102")
    if _is(dose, "DV_QUANTITY") and k["dose"]:
        out[k["dose"]] = dt.quantity_to_fhir(dose)
    elif _is(dose, "DV_INTERVAL") and k["doseRange"] and _range(dose):
        out[k["doseRange"]] = _range(dose)
    if _is(rate, "DV_QUANTITY"):
        ratio = _ratio_of_unit(rate)
        if ratio and k["rateRatio"]:
            out[k["rateRatio"]] = ratio
        elif not ratio and k["rateQuantity"]:
            out[k["rateQuantity"]] = dt.quantity_to_fhir(rate)
    elif _is(rate, "DV_INTERVAL") and k["rateRange"] and _range(rate):
        out[k["rateRange"]] = _range(rate)
    left = None
    if _is(dur, "DV_DURATION") and dt.duration_to_fhir(dur.get("value", "")):
        if rate is None and _is(dose, "DV_QUANTITY") and k["rateRatio"]:
            out[k["rateRatio"]] = {"numerator": dt.quantity_to_fhir(dose),
                                   "denominator": dt.duration_to_fhir(dur["value"])}
        elif dose is None:
            left = dur["value"]
    return out, left


def _dose_rate_rev(src: dict, cluster: dict) -> None:
    """dose[x]/rate[x] of ``src`` -> dose amount, administration rate, administration duration."""
    dose = src.get("doseQuantity") or src.get("dose")
    if isinstance(dose, dict) and dose.get("value") is not None:
        _add(cluster, "at0144", "Dose amount", dt.quantity_to_dv(dose))
    elif isinstance(src.get("doseRange"), dict) and _interval(src["doseRange"]):
        _add(cluster, "at0144", "Dose amount", _interval(src["doseRange"]))
    ratio = src.get("rateRatio")
    if isinstance(src.get("rateQuantity"), dict) and src["rateQuantity"].get("value") is not None:
        _add(cluster, "at0134", "Administration rate", dt.quantity_to_dv(src["rateQuantity"]))
    elif isinstance(src.get("rateRange"), dict) and _interval(src["rateRange"]):
        _add(cluster, "at0134", "Administration rate", _interval(src["rateRange"]))
    elif isinstance(ratio, dict):
        den = ratio.get("denominator") or {}
        iso = dt.duration_from_fhir(den) if den.get("system") in (None, terminology.UCUM) else None
        if _same_quantity(ratio.get("numerator"), dose) and iso and dt.duration_to_fhir(iso):
            _add(cluster, "at0102", "Administration duration", {"_type": "DV_DURATION", "value": iso})
        elif _unit_of_ratio(ratio):
            _add(cluster, "at0134", "Administration rate", _unit_of_ratio(ratio))


def dose_and_rate(ctx, rule, onode, fobj, fmodel, direction):
    """See the module doc (``doseAndRate``)."""
    if rule.openehr:  # the rule names the cluster and the FHIR element (MedicationAdministration.dosage)
        obase, osteps = o_base(ctx, rule.openehr, onode)
        fbase, fbmodel, fpath = f_base(ctx, rule.fhir, fobj, fmodel)
        model = fhirpath.model_at(fbmodel, fpath)
        if direction == FWD:
            cluster = next(iter(rmpath.find(obase, osteps)), None)
            out, _ = _dose_rate_fwd(cluster, model) if cluster else ({}, None)
            if out:
                target = fhirpath.get_values(fbase, fpath)
                (target[0] if target else fhirpath.put(fbase, fbmodel, fpath, {})).update(out)
            return
        src = next(iter(fhirpath.get_values(fbase, fpath)), None)
        if isinstance(src, dict):
            probe: dict = {}
            _dose_rate_rev(src, probe)
            if probe.get("items"):
                rmpath.ensure(obase, osteps).setdefault("items", []).extend(probe["items"])
        return
    dosage_level = "doseAndRate" in fhirmodel.fields(fmodel)
    if direction == FWD:
        out, left = _dose_rate_fwd(onode, "DosageDoseAndRate" if dosage_level else fmodel)
        if out:
            (fobj.setdefault("doseAndRate", [{}])[0] if dosage_level else fobj).update(out)
        if left and dosage_level:
            q = dt.duration_to_fhir(left)
            fobj.setdefault("timing", {}).setdefault("repeat", {}).update(duration=q["value"], durationUnit=q["code"])
        return
    src = ((fobj.get("doseAndRate") or [{}])[0] if dosage_level else fobj) or {}
    _dose_rate_rev(src, onode)
    rep = (fobj.get("timing") or {}).get("repeat") or {} if dosage_level else {}
    if rep.get("duration") is not None and rep.get("durationMax") is None and _first(onode, "at0144") is None:
        iso = dt.duration_from_fhir({"value": rep["duration"], "code": rep.get("durationUnit")})
        if iso and _first(onode, "at0102") is None:
            _add(onode, "at0102", "Administration duration", {"_type": "DV_DURATION", "value": iso})


# ------------------------------------------------------------------ timing
def _timing_clusters(holder, direction_node) -> tuple[list, list, bool]:
    """(daily clusters, non-daily clusters, ok): ok is False when the timing spans dosage clusters."""
    daily = [c for c in _items(holder) if str(c.get("archetype_node_id", "")).startswith(DAILY)]
    non = [c for c in _items(holder) + _items(direction_node) if str(c.get("archetype_node_id", "")).startswith(NONDAILY)]
    if direction_node is not None:
        doses = [c for c in _items(direction_node) if c.get("archetype_node_id") in DOSAGE_CLUSTERS]
        timed = [c for c in doses if any(str(i.get("archetype_node_id", "")).startswith((DAILY, NONDAILY))
                                         for i in _items(c))]
        if len(doses) > 1 and timed:
            return [], [], False
    return daily, non, True


def _freq(dv, units: tuple) -> dict | None:
    """frequency DV_QUANTITY n '1/u' (or an interval of them) -> repeat {frequency, frequencyMax, period 1, periodUnit u}."""
    def one(q):
        m = re.match(r"^1/(\w+)$", str((q or {}).get("units", "")))
        mag = (q or {}).get("magnitude")
        if not m or m.group(1) not in units or mag is None or float(mag) < 1 or not float(mag).is_integer():
            return None
        return int(mag), m.group(1)
    if _is(dv, "DV_QUANTITY") and one(dv):
        n, u = one(dv)
        return {"frequency": n, "period": 1, "periodUnit": u}
    if _is(dv, "DV_INTERVAL") and dv.get("lower_included") is not False and dv.get("upper_included") is not False:
        lo, hi = one(dv.get("lower")), one(dv.get("upper"))
        if lo and hi and lo[1] == hi[1] and lo[0] <= hi[0]:
            return {"frequency": lo[0], "frequencyMax": hi[0], "period": 1, "periodUnit": lo[1]}
    return None


def _interval_repeat(dv, units: tuple) -> dict | None:
    q = dt.duration_to_fhir(dv.get("value", "")) if _is(dv, "DV_DURATION") else None
    if not q or q["code"] not in units or not float(q["value"]).is_integer() or q["value"] <= 0:
        return None
    return {"frequency": 1, "period": _num(q["value"]), "periodUnit": q["code"]}


def _event_code(dv) -> str | None:
    if _is(dv, "DV_CODED_TEXT"):
        tid, code = dt.phrase_parts(dv.get("defining_code") or {})
        return code if terminology.system_for(tid) in EVENT_SYSTEMS and code in EVENT_TIMING else None
    if _is(dv, "DV_TEXT") and str(dv.get("value", "")) in EVENT_TIMING:
        return dv["value"]
    return None


def _fhir_time(dv) -> str | None:
    m = _TIME.match(str((dv or {}).get("value", ""))) if _is(dv, "DV_TIME") else None
    if not m or int(m.group(1)) > 23:
        return None
    return f"{m.group(1)}:{m.group(2)}:{m.group(3) or '00'}"


def _daily_rhythm(c: dict) -> dict | None:
    return _freq(_value(c, "at0003"), _DAILY_UNITS) or _interval_repeat(_value(c, "at0014"), _DAILY_UNITS)


def _nondaily_rhythm(c: dict) -> dict | None:
    return _freq(_value(c, "at0014"), _LONG_UNITS) or _interval_repeat(_value(c, "at0002"), ("d",) + _LONG_UNITS)


def _daily_fwd(c: dict, rep: dict, dosage: dict) -> bool:
    """timing_daily -> repeat; True when it set a frequency/period."""
    rhythm = _daily_rhythm(c)
    if rhythm:
        rep.update(rhythm)
    times = [_fhir_time(e.get("value")) for e in _items(c) if e.get("archetype_node_id") == "at0004"]
    times = times if times and all(times) else []  # all or none: fewer times would claim fewer doses
    events = [e for e in _items(c) if e.get("archetype_node_id") == "at0039"]
    codes = [_event_code(_value(e, "at0026")) for e in events]
    when, offset = (codes, _offset(events, codes)) if events and all(codes) else ([], None)
    if offset is False:
        when = []  # offsets FHIR cannot say (differing, negative, at a meal: tim-9) would change the time
    if times and when:
        return bool(rhythm)  # tim-10: times and events together have no FHIR form; both stay in the residue
    if times:
        rep["timeOfDay"] = times
    if when:
        rep["when"] = when
        if offset is not None:
            rep["offset"] = offset
    return bool(rhythm)


def _offset(events: list, codes: list):
    """The one time offset (minutes) of all events, None without offsets, False when FHIR cannot say it."""
    offs = {(_value(e, "at0040") or {}).get("value") for e in events}
    if offs == {None}:
        return None
    q = dt.duration_to_fhir(next(iter(offs))) if len(offs) == 1 else None
    if not q or q["code"] not in ("min", "h") or not float(q["value"]).is_integer() \
            or any(c in ("C", "CM", "CD", "CV") for c in codes):
        return False
    return int(q["value"]) * (60 if q["code"] == "h" else 1)


def _as_needed_fwd(c: dict, dosage: dict) -> None:
    """'As required' at0024 / its criterion at0025 -> asNeededBoolean / asNeededCodeableConcept."""
    prn, why = _value(c, "at0024"), _value(c, "at0025")
    if isinstance(why, dict) and why and dt.dv_type(why) in ("DV_TEXT", "DV_CODED_TEXT"):
        dosage["asNeededCodeableConcept"] = dt.coded_to_fhir(why) if dt.dv_type(why) == "DV_CODED_TEXT" \
            else dt.text_to_fhir_cc(why)
    elif _is(prn, "DV_BOOLEAN"):
        dosage["asNeededBoolean"] = bool(prn.get("value"))


def _nondaily_fwd(c: dict, rep: dict, dosage: dict) -> bool:
    rhythm = _nondaily_rhythm(c)
    if rhythm:
        rep.update(rhythm)
    days = []
    for e in _items(c):
        if e.get("archetype_node_id") == "at0003":
            tid, code = dt.phrase_parts((e.get("value") or {}).get("defining_code") or {})
            days.append(WEEKDAYS.get(code, (None,))[0] if tid == "local" else None)
    if days and all(days):
        rep["dayOfWeek"] = days
    dates = [(e.get("value") or {}) for e in _items(c) if e.get("archetype_node_id") == "at0001"]
    if dates and all(_is(d, "DV_DATE") for d in dates):
        dosage.setdefault("timing", {})["event"] = [d["value"] for d in dates]
    return bool(rhythm)


def _daily_rev(rep: dict, dosage: dict, c: dict, with_rhythm: bool) -> None:
    if with_rhythm:
        f, p, u = rep.get("frequency", 1), rep.get("period"), rep.get("periodUnit")
        fmax = rep.get("frequencyMax")
        if p == 1:
            def q(n):
                return {"_type": "DV_QUANTITY", "magnitude": float(n), "units": f"1/{u}"}
            _add(c, "at0003", "Frequency", q(f) if fmax is None else
                 {"_type": "DV_INTERVAL", "lower": q(f), "upper": q(fmax), "lower_included": True,
                  "upper_included": True, "lower_unbounded": False, "upper_unbounded": False})
        elif f == 1 and fmax is None:
            _add(c, "at0014", "Interval", {"_type": "DV_DURATION",
                                           "value": dt.duration_from_fhir({"value": _num(p), "code": u})})
    for t in rep.get("timeOfDay") or []:
        _add(c, "at0004", "Specific time", {"_type": "DV_TIME", "value": t})
    for code in rep.get("when") or []:
        ev = _cluster(c, "at0039", "Specific event")
        _add(ev, "at0026", "Event name", {"_type": "DV_TEXT", "value": code})
        if rep.get("offset") is not None:
            off = rep["offset"]
            _add(ev, "at0040", "Time offset", {"_type": "DV_DURATION",
                                               "value": f"PT{off // 60}H" if off and off % 60 == 0 else f"PT{off}M"})
    if isinstance(dosage.get("asNeededCodeableConcept"), dict):
        _add(c, "at0024", "As required", {"_type": "DV_BOOLEAN", "value": True})
        _add(c, "at0025", "'As required' criterion", dt.cc_to_dv(dosage["asNeededCodeableConcept"]))
    elif dosage.get("asNeededBoolean") is True:  # the archetype allows only true; false is no element
        _add(c, "at0024", "As required", {"_type": "DV_BOOLEAN", "value": True})


def _nondaily_rev(rep: dict, timing: dict, c: dict, with_rhythm: bool) -> None:
    if with_rhythm:
        f, p, u = rep.get("frequency", 1), rep.get("period"), rep.get("periodUnit")
        fmax = rep.get("frequencyMax")
        if p == 1 and u in _LONG_UNITS:
            def q(n):
                return {"_type": "DV_QUANTITY", "magnitude": float(n), "units": f"1/{u}"}
            _add(c, "at0014", "Frequency", q(f) if fmax is None else
                 {"_type": "DV_INTERVAL", "lower": q(f), "upper": q(fmax), "lower_included": True,
                  "upper_included": True, "lower_unbounded": False, "upper_unbounded": False})
        elif f == 1 and fmax is None:
            _add(c, "at0002", "Repetition interval",
                 {"_type": "DV_DURATION", "value": dt.duration_from_fhir({"value": _num(p), "code": u})})
    for day in rep.get("dayOfWeek") or []:
        if day in DAY_CODES:
            at, name = DAY_CODES[day]
            _add(c, "at0003", "Specific day of week", dt.coded_text(name, "local", at))
    for ev in timing.get("event") or []:
        if re.match(r"^\d{4}(-\d{2}(-\d{2})?)?$", str(ev)):
            _add(c, "at0001", "Specific date", {"_type": "DV_DATE", "value": ev})


def rhythm_home(rep: dict) -> str | None:
    """'daily' / 'nondaily': the timing cluster that holds a repeat's frequency/period, None if neither can."""
    f, fmax, p, u = rep.get("frequency", 1), rep.get("frequencyMax"), rep.get("period"), rep.get("periodUnit")
    if p is None or u is None or rep.get("periodMax") is not None or not isinstance(f, int) or f < 1 \
            or not float(p).is_integer() or p <= 0:
        return None
    if p == 1 and u in _DAILY_UNITS:
        return "daily"  # n times per second/minute/hour/day
    if p == 1 and u in _LONG_UNITS:
        return "nondaily"  # n times per week/month/year
    if f != 1 or fmax is not None:
        return None  # n times per k units: neither archetype has a frequency per several units
    iso = dt.duration_from_fhir({"value": int(p), "code": u})
    if u in ("s", "min", "h") and dt.parse_duration(iso or "") and dt.parse_duration(iso).total_seconds() <= 86400:
        return "daily"  # every k hours (the daily interval is at most PT24H)
    return "nondaily" if u in ("d",) + _LONG_UNITS else None


def dosage_timing(ctx, rule, onode, fobj, fmodel, direction, *, skip_rhythm=None):
    """See the module doc (``dosageTiming``).  ``skip_rhythm(dosage)`` (medication order: the
    activity's ISO 8601 timing claims that Dosage's frequency/period) leaves the rhythm alone back."""
    if rule.openehr:
        base, steps = o_base(ctx, rule.openehr, onode)
        direction_node = onode  # forward: its dosage cluster of either version; back: the one the path names
        holder = next((c for c in _items(onode) if c.get("archetype_node_id") in DOSAGE_CLUSTERS), None)
    else:
        steps, holder, direction_node = None, onode, None
    if direction == FWD:
        daily, non, ok = _timing_clusters(holder, direction_node)
        if not ok:
            return
        if len(daily) == 1:
            _as_needed_fwd(daily[0], fobj)  # holds whatever the schedule is
        if len(daily) > 1 or len(non) > 1:
            return
        if daily and non and _daily_rhythm(daily[0]) and _nondaily_rhythm(non[0]):
            return  # "n times a day, every k weeks": one Timing.repeat cannot say it; all in the residue
        rep: dict = {}
        if daily:
            _daily_fwd(daily[0], rep, fobj)
        if non:
            _nondaily_fwd(non[0], rep, fobj)
        if rep:
            fobj.setdefault("timing", {}).setdefault("repeat", {}).update(rep)
        return
    timing = fobj.get("timing") or {}
    rep = timing.get("repeat") or {}
    home = rhythm_home(rep) if not (skip_rhythm and skip_rhythm(fobj)) else None
    wants_daily = home == "daily" or rep.get("timeOfDay") or rep.get("when") or \
        isinstance(fobj.get("asNeededCodeableConcept"), dict) or isinstance(fobj.get("asNeededBoolean"), bool)
    wants_non = home == "nondaily" or rep.get("dayOfWeek") or timing.get("event")
    if wants_daily:
        target = rmpath.ensure(base, steps) if steps else holder
        c = _cluster(target, DAILY_ID, "Timing - daily")
        _daily_rev(rep, fobj, c, home == "daily")
    if wants_non:
        c = _cluster(holder if not steps else onode, NONDAILY_ID, "Timing - non-daily")
        _nondaily_rev(rep, timing, c, home == "nondaily")
