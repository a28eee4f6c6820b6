"""Hooks (``mappingCode``) of the medication rows: timing, the orderer, the medication item, the mCODE rule.

* ``isoRepeatingTiming``: ACTIVITY.timing (DV_PARSABLE, ISO 8601 repeating interval such as
  ``R/2025-03-15T08:00:00+01:00/P1D`` or ``R10/PT8H``) <-> Dosage.timing.repeat
  (count, frequency 1, period + periodUnit, boundsPeriod.start) of the order's last Dosage.
  Other formalisms or shapes stay in the residue.
* ``therapeuticDirectionBounds``: CLUSTER.therapeutic_direction.v1 start (at0178), stop (at0179)
  and direction duration (at0066, DV_DURATION) <-> Dosage.timing.repeat.bounds[x].  FHIR has one
  bounds[x]: a start/stop gives boundsPeriod (a duration with a start becomes its end, the exact
  duration then travels in the residue); a duration alone gives boundsDuration.
* ``orderRequester``: MedicationRequest.requester <- the ordering participation, else the
  composer (see the hook); back -> other_participations.
* ``cancerRelatedMedication``: applies the rule's ``manual`` entries (the mCODE profile) when the
  clinical indication (at0018) names a cancer or the medication item (at0070) is an anticancer
  agent, by the documented lists in ``oncology`` below.  No terminology server is used.
"""
from __future__ import annotations

import re

from . import datatypes as dt
from . import fhirmodel, fhirpath, hooks_dosage, rmpath
from .identifiers import parse_source_identifier
from .parties import PLACEHOLDER_COMPOSER, party_to_reference, reference_to_party
from .runtime import FWD

_REPEAT = re.compile(r"^R(?P<n>\d*)/(?:(?P<start>\d{4}-[^/]+)/)?(?P<dur>P[^/]+)$")


# ------------------------------------------------------------------ ACTIVITY.timing
def _last_dosage(res: dict) -> dict:
    lst = res.setdefault("dosageInstruction", [])
    if not lst:
        lst.append({})
    return lst[-1]


def iso_repeating_timing(ctx, rule, onode, fobj, fmodel, direction):
    if direction == FWD:
        tv = onode.get("timing") if isinstance(onode, dict) else None
        if not isinstance(tv, dict) or str(tv.get("formalism", "")).upper().replace(" ", "") not in (
                "ISO8601", "ISO8601:2004", "TIMING"):
            return
        m = _REPEAT.match(str(tv.get("value", "")).strip())
        q = dt.duration_to_fhir(m["dur"]) if m else None
        if q is None:
            return
        repeat = _last_dosage(fobj).setdefault("timing", {}).setdefault("repeat", {})
        if any(repeat.get(k) not in (None, v) for k, v in (("frequency", 1), ("period", q["value"]),
                                                            ("periodUnit", q["code"]))):
            return  # the Dosage already has another rhythm (a timing cluster): this one stays in the residue
        if m["n"]:
            repeat["count"] = int(m["n"])
        repeat.update(frequency=1, period=q["value"], periodUnit=q["code"])
        if m["start"] and not any(k.startswith("bounds") and k != "boundsPeriod" for k in repeat):
            bp = repeat.setdefault("boundsPeriod", {})
            bp.setdefault("start", dt.datetime_to_fhir(m["start"]))
        return
    dosage = iso_timed_dosage(fobj)
    if dosage is not None:
        rep = dosage["timing"]["repeat"]
        dur = dt.duration_from_fhir({"value": rep["period"], "code": rep.get("periodUnit")})
        start = (rep.get("boundsPeriod") or {}).get("start")
        value = f"R{rep.get('count', '')}/" + (f"{start}/" if start else "") + dur
        onode["timing"] = {"_type": "DV_PARSABLE", "value": value, "formalism": "ISO8601"}


def iso_timed_dosage(res: dict) -> dict | None:
    """The Dosage whose repeat (frequency 1 per one period) goes back to ACTIVITY.timing: the first such."""
    for dosage in res.get("dosageInstruction") or []:
        rep = (dosage.get("timing") or {}).get("repeat") or {}
        if rep.get("period") is None or rep.get("frequency", 1) != 1 or rep.get("periodMax") is not None \
                or rep.get("frequencyMax") is not None:
            continue
        if dt.duration_from_fhir({"value": rep["period"], "code": rep.get("periodUnit")}) is not None:
            return dosage
    return None


def order_dosage_timing(ctx, rule, onode, fobj, fmodel, direction):
    """dosageTiming for a medication order's therapeutic direction: back, the Dosage whose rhythm
    ACTIVITY.timing takes (isoRepeatingTiming) keeps it there, not in a timing cluster too."""
    hooks_dosage.dosage_timing(ctx, rule, onode, fobj, fmodel, direction,
                               skip_rhythm=lambda dosage: dosage is iso_timed_dosage(ctx.resource))


# ------------------------------------------------------------------ therapeutic direction bounds
def _el(cluster: dict, node: str):
    return next((i for i in cluster.get("items") or [] if i.get("archetype_node_id") == node), None)


def _new_el(cluster: dict, node: str, name: str, value: dict) -> None:
    cluster.setdefault("items", []).append({"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": name},
                                            "archetype_node_id": node, "value": value})


def therapeutic_direction_bounds(ctx, rule, onode, fobj, fmodel, direction):
    """onode: the CLUSTER.therapeutic_direction.v1; fobj: its Dosage."""
    if direction == FWD:
        def val(node, rm):
            el = _el(onode, node)
            v = (el or {}).get("value") or {}
            return v.get("value") if dt.dv_type(v) == rm or v.get("_type") == rm else None
        start, stop = val("at0178", "DV_DATE_TIME"), val("at0179", "DV_DATE_TIME")
        dur = val("at0066", "DV_DURATION")
        if start or stop:
            period = {}
            if start:
                period["start"] = dt.datetime_to_fhir(start)
            if stop:
                period["end"] = dt.datetime_to_fhir(stop)
            elif dur and start:
                end = dt.add_duration(period["start"], dur)
                if end:
                    period["end"] = end
            fhirpath.put(fobj, fmodel, "timing.repeat.boundsPeriod", period)
        elif dur and dt.duration_to_fhir(dur):
            fhirpath.put(fobj, fmodel, "timing.repeat.boundsDuration", dt.duration_to_fhir(dur))
        return
    rep = (fobj.get("timing") or {}).get("repeat") or {}
    bp, bd = rep.get("boundsPeriod") or {}, rep.get("boundsDuration")
    if bp.get("start"):
        _new_el(onode, "at0178", "Order start date/time", {"_type": "DV_DATE_TIME", "value": bp["start"]})
    if bp.get("end"):
        _new_el(onode, "at0179", "Order stop date/time", {"_type": "DV_DATE_TIME", "value": bp["end"]})
    if bd and dt.duration_from_fhir(bd):
        _new_el(onode, "at0066", "Direction duration", {"_type": "DV_DURATION", "value": dt.duration_from_fhir(bd)})


# ------------------------------------------------------------------ oncology rule
class oncology:  # noqa: N801 - a namespace of documented lists
    """What makes an entry cancer-related, without a terminology server (documented, general):

    * a condition is a cancer when coded ICD-10 (any ICD-10 variant id) C00-C97, D00-D09 or
      D37-D48, ICD-O-3 morphology with behaviour /2 or /3, SNOMED CT 363346000 (malignant
      neoplastic disease) or 372087000 (primary malignant neoplasm) or 128462008 (secondary
      malignant neoplasm), or when its text (value or any display) names one (``CANCER_WORDS``);
    * a medication is an anticancer agent when coded ATC L01 / L02 (antineoplastic and
      endocrine therapy) or when its text names one of ``AGENTS`` (INN stems, EN/DE spelling).
    """
    CANCER_WORDS = re.compile(r"cancer|carcinom|karzinom|neoplas|neubildung|malignan|maligne|tumou?r|sarcom|sarkom"
                              r"|lymphom|leuk(a)?emi|leukäm|melanom|myelom|metasta|blastom|mesotheliom|gliom"
                              r"|krebs|\bca\b", re.I)
    SNOMED = {"363346000", "372087000", "128462008"}
    AGENTS = re.compile(r"tamoxif|letrozol|anastrozol|exemestan|fulvestrant|trastuzumab|pertuzumab|doxorubicin"
                        r"|epirubicin|cyclophosphamid|paclitaxel|docetaxel|carboplatin|cisplatin|oxaliplatin"
                        r"|capecitabin|fluorouracil|\b5-?fu\b|gemcitabin|pembrolizumab|nivolumab|atezolizumab"
                        r"|ciclib\b|tinib\b|parib\b|rituximab|bevacizumab|cetuximab|etoposid|vincristin"
                        r"|vinorelbin|irinotecan|goserelin|leuprore|bicalutamid|enzalutamid|abirateron"
                        r"|temozolomid|methotrexat|folfox|folfiri|\bfec\b|\bac-t\b", re.I)

    @staticmethod
    def parts(dv) -> tuple[list[str], list[tuple[str, str]]]:
        if not isinstance(dv, dict):
            return [], []
        texts = [str(dv.get("value") or "")]
        codes = []
        if dv.get("defining_code"):
            codes.append(dt.phrase_parts(dv["defining_code"]))
        for m in dv.get("mappings") or []:
            codes.append(dt.phrase_parts(m.get("target") or {}))
        return texts, [(t.lower(), c.strip().upper()) for t, c in codes]

    @classmethod
    def is_cancer_condition(cls, dv) -> bool:
        texts, codes = cls.parts(dv)
        for tid, code in codes:
            if "icd" in tid and "10" in tid and re.match(r"^(C\d\d|D0\d|D3[7-9]|D4[0-8])", code):
                return True
            if ("icd-o" in tid or "icdo" in tid or "icd_o" in tid) and re.match(r"^\d{4}/[23]$", code):
                return True
            if "snomed" in tid and code in cls.SNOMED:
                return True
        return any(cls.CANCER_WORDS.search(t) for t in texts)

    @classmethod
    def is_anticancer_agent(cls, dv) -> bool:
        texts, codes = cls.parts(dv)
        if any("atc" in tid and code.startswith(("L01", "L02")) for tid, code in codes):
            return True
        return any(cls.AGENTS.search(t) for t in texts)


def apply_manual_once(ctx, rule, onode, fobj, fmodel) -> None:
    """Write a rule's fhir-only manual values, never twice and never over an existing value."""
    for m in rule.manual:
        for f in m.fhir:
            is_list, _ = fhirmodel.field(*_parent_model(fmodel, f["path"]))
            have = fhirpath.get_values(fobj, f["path"])
            if (is_list and f["value"] in have) or (not is_list and have):
                continue
            fhirpath.put(fobj, fmodel, f["path"], f["value"])


def _parent_model(model: str, path: str) -> tuple[str, str]:
    parts = path.split(".")
    parent = fhirpath.model_at(model, ".".join(parts[:-1])) if len(parts) > 1 else model
    return parent, parts[-1]


def description_values(node: dict, nodes: tuple[str, ...]) -> list:
    """Values of the direct ELEMENT children of an ACTIVITY description or ACTION description
    (slotted clusters have their own at-code namespaces, so they are not searched)."""
    tree = node.get("description") if isinstance(node.get("description"), dict) else node
    return [i.get("value") for i in tree.get("items") or [] if i.get("archetype_node_id") in nodes]


def cancer_related_medication(ctx, rule, onode, fobj, fmodel, direction):
    """mCODE CancerRelatedMedicationRequest when the indication is a cancer or the drug an
    anticancer agent (medication_order at0018 / at0070, also inside slotted clusters)."""
    if direction != FWD:
        return  # a profile is a claim about the FHIR side only
    if any(oncology.is_cancer_condition(v) for v in description_values(onode, ("at0018",))) or \
            any(oncology.is_anticancer_agent(v) for v in description_values(onode, ("at0070",))):
        apply_manual_once(ctx, rule, onode, fobj, fmodel)


_ORDERER = re.compile(r"request|order|prescri|verordn|anforder|auftrag", re.I)
REQUESTER_FUNCTION = "requester"


def _function_text(participation: dict) -> str:
    f = participation.get("function")
    return str(f.get("value", "")) if isinstance(f, dict) else ""


def order_requester(ctx, rule, onode, fobj, fmodel, direction):
    """MedicationRequest.requester (us-core-21: SHALL be present for intent order), both ways.

    openehr->fhir: the performer of the entry's first ``other_participations`` whose function
    names the orderer (requester, orderer, prescriber, Verordner, Anforderer...), else the
    composition's composer (the clinician responsible for the order composition; not from_fhir's
    placeholder composer of a composition it had to invent), as a Reference
    (PARTY_IDENTIFIED name -> display, external_ref -> reference or identifier: composition.py's
    party rules).  A PARTY_SELF or missing party gives a requester carrying only a
    data-absent-reason (unknown), read back as no value.
    fhir->openehr: a requester becomes a PARTICIPATION (function 'requester', performer the party)
    in the entry's other_participations.  When it came from the composer, the source entry has no
    such participation: the residue removes it again (with a basis, so a requester edited on the
    FHIR side is kept as a participation)."""
    entry, res = ctx.archetype, ctx.resource
    if direction == FWD:
        party = next((p.get("performer") for p in entry.get("other_participations") or []
                      if isinstance(p, dict) and _ORDERER.search(_function_text(p))
                      and (p.get("performer") or {}).get("_type") != "PARTY_SELF"), None)
        if party is None and ctx.composition is not None:
            party = ctx.composition.get("composer")
            party = None if party == PLACEHOLDER_COMPOSER else party  # made by from_fhir: nobody ordered
        ref = party_to_reference(party) if isinstance(party, dict) and party.get("_type") != "PARTY_SELF" else None
        res["requester"] = ref or {"extension": [{"url": dt.DAR_EXT, "valueCode": "unknown"}]}
        return
    ref = res.get("requester")
    if not isinstance(ref, dict) or set(ref) <= {"extension"}:
        return
    party = reference_to_party(ref, (res.get("subject") or {}).get("reference"))
    if party is not None:
        entry.setdefault("other_participations", []).append(
            {"_type": "PARTICIPATION", "function": {"_type": "DV_TEXT", "value": REQUESTER_FUNCTION},
             "performer": party})


def contained_medication(ctx, rule, onode, fobj, fmodel, direction):
    """medication[x] that the plain CodeableConcept rule cannot read, both ways; the rule's openEHR
    path names the medication item ELEMENT (medication_order at0070, ACTION.medication at0020).

    fhir->openehr: a medicationReference gives the medication item from the referenced
    Medication's code: a contained one (``#id``), else one sent alongside (same bundle/group,
    ``Medication/id`` or ``urn:uuid:``), else the reference's display; a reference nothing resolves
    becomes a null-flavoured item (253 unknown), and so does a medicationCodeableConcept that only
    carries a data-absent-reason.  openehr->fhir: without a medication value (null flavour, or no
    item, and no other rule gave one) medicationCodeableConcept gets the data-absent-reason
    extension, because medication[x] is 1..1 (MedicationRequest, MedicationAdministration)."""
    steps = rmpath.parse(rule.openehr)
    item = steps[-1]
    if direction == FWD:
        if fobj.get("medicationCodeableConcept") or fobj.get("medicationReference"):
            return
        el = next(iter(rmpath.find(onode, steps)), None) if isinstance(onode, dict) else None
        dar = dt.null_flavour_to_dar(el["null_flavour"])["coding"][0]["code"] if el and el.get("null_flavour") \
            else "unknown"
        fobj["medicationCodeableConcept"] = {"extension": [{"url": dt.DAR_EXT, "valueCode": dar}]}
        return
    given = fobj.get("medicationCodeableConcept")
    if given and (given.get("coding") or given.get("text")):
        return
    cc = None
    if not given:
        ref = fobj.get("medicationReference") or {}
        target = ref.get("reference") or ""
        med = next((c for c in fobj.get("contained") or [] if c.get("resourceType") == "Medication"
                    and target == f"#{c.get('id')}"), None)
        if med is None and target and not target.startswith("#"):
            med = (ctx.unit.by_ref or {}).get(target)
            med = med if (med or {}).get("resourceType") == "Medication" else None
            if med is not None and "CLUSTER.medication." in (parse_source_identifier(med) or ("", "", ""))[2]:
                return  # made from a medication details cluster: the statement's slot rule reads it back
            if med is not None:
                ctx.unit.used.add(id(med))  # read here as the medication's code: no slot rule reads it again
        cc = (med or {}).get("code") or ({"text": ref["display"]} if ref.get("display") else None)
        if cc is not None and not (cc.get("coding") or cc.get("text")):
            cc = None
    tree = rmpath.ensure(onode, steps[:-1])
    items = tree.setdefault(item.attr, [])
    items[:] = [i for i in items if i.get("archetype_node_id") != item.node]  # e.g. a DAR-only concept read as ''
    el = {"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": item.name or "Medication item"},
          "archetype_node_id": item.node}
    if cc:
        el["value"] = dt.cc_to_dv(cc)
    else:
        dar = next((e.get("valueCode") for e in (given or {}).get("extension") or [] if e.get("url") == dt.DAR_EXT),
                   "unknown")
        el["null_flavour"] = dt.dar_to_null_flavour({"coding": [{"system": dt.DAR_SYSTEM, "code": dar}]})
    items.insert(0, el)


def cancer_related_administration(ctx, rule, onode, fobj, fmodel, direction):
    """ACTION.medication.v1: mCODE CancerRelatedMedicationAdministration when the clinical indication
    (at0156) names a cancer or the medication is an anticancer agent (medication item at0020, or the
    name at0132 of a slotted CLUSTER.medication), by the ``oncology`` lists."""
    if direction != FWD:
        return
    drugs = description_values(onode, ("at0020",)) + [
        v for c in (onode.get("description") or {}).get("items") or []
        if str(c.get("archetype_node_id", "")).startswith("openEHR-EHR-CLUSTER.medication.")
        for v in description_values(c, ("at0132",))]
    if any(oncology.is_cancer_condition(v) for v in description_values(onode, ("at0156",))) or \
            any(oncology.is_anticancer_agent(v) for v in drugs):
        apply_manual_once(ctx, rule, onode, fobj, fmodel)


def dose_or_rate(ctx, rule, onode, fobj, fmodel, direction):
    """MedicationAdministration.dosage must have a dose or a rate[x] (invariant mad-1): a dosage that
    only has route/site/method/text gets ``dose`` with the data-absent-reason extension (unknown),
    which reads back as no dose (a value with only extensions is no value)."""
    dosage = fobj.get("dosage") if direction == FWD else None
    if isinstance(dosage, dict) and not dosage.get("dose") and not any(k.startswith("rate") for k in dosage):
        dosage["dose"] = {"extension": [{"url": dt.DAR_EXT, "valueCode": "unknown"}]}


# ------------------------------------------------------------------ statement and administration times
def statement_time(ctx, rule, onode, fobj, fmodel, direction):
    """OBSERVATION.medication_statement.v0 event (one MedicationStatement per event) <-> effective[x].

    The archetype asserts use of the medication at the event's time: a POINT_EVENT (or an
    INTERVAL_EVENT without its width) is effectiveDateTime = time; an INTERVAL_EVENT with a width is
    effectivePeriod (start = time - width, end = time; its math function stays in the residue).  Back,
    effectiveDateTime or a period with start and end give the event; a period with only one end gives
    a point event at it (an open period "since" / "until" has no openEHR form: reported); no effective[x]
    takes dateAsserted (the assertion is about use at that time; one way).  HISTORY.origin (mandatory)
    is the event time when nothing else gives it."""
    event = ctx.event
    if event is None:
        return
    if direction == FWD:
        t = (event.get("time") or {}).get("value")
        width = (event.get("width") or {}).get("value")
        td, end = dt.parse_duration(width or ""), dt.parse_dt(dt.datetime_to_fhir(t)) if t else None
        if not t:
            return
        if event.get("_type") == "INTERVAL_EVENT" and td is not None and end is not None:
            fobj["effectivePeriod"] = {"start": dt.format_dt(end - td), "end": dt.datetime_to_fhir(t)}
        else:
            fobj["effectiveDateTime"] = dt.datetime_to_fhir(t)
        return
    period = fobj.get("effectivePeriod") or {}
    start, end = period.get("start"), period.get("end")
    if start and end and dt.parse_dt(start) and dt.parse_dt(end) and dt.parse_dt(end) >= dt.parse_dt(start):
        event["_type"] = "INTERVAL_EVENT"
        event["time"] = {"_type": "DV_DATE_TIME", "value": end}
        event["width"] = {"_type": "DV_DURATION", "value": dt.format_duration(dt.parse_dt(end) - dt.parse_dt(start))}
        event["math_function"] = dt.coded_text("actual", "openehr", "640")
    else:
        t = fobj.get("effectiveDateTime") or start or end or fobj.get("dateAsserted")
        if t:
            event["time"] = {"_type": "DV_DATE_TIME", "value": t}
    hist = ctx.archetype.get("data") if isinstance(ctx.archetype, dict) else None
    if isinstance(hist, dict) and not hist.get("origin") and event.get("time"):
        hist["origin"] = {"_type": "DV_DATE_TIME", "value": event["time"]["value"]}


_DURATION_PATH = "description[at0017]/items[openEHR-EHR-CLUSTER.dosage.v2]/items[at0102]"
_FRACTION = re.compile(r"T\d{2}:\d{2}:\d{2}(\.\d+)")


def _like(template: str, moment) -> str:
    """``moment`` as FHIR dateTime with the fractional seconds ``template`` shows (.000 stays .000)."""
    out = dt.format_dt(moment)
    frac = _FRACTION.search(template or "")
    if frac and not _FRACTION.search(out):
        out = re.sub(r"(T\d{2}:\d{2}:\d{2})", lambda m: m.group(1) + frac.group(1), out, count=1)
    return out


def administration_period(ctx, rule, onode, fobj, fmodel, direction):
    """ACTION.medication.v1 time (when the action completed) and the dosage's administration duration
    (CLUSTER.dosage.v2 at0102) <-> MedicationAdministration.effective[x].

    Forward: with an exact duration (no years/months) the administration ran from time - duration to
    time: effectivePeriod; otherwise effectiveDateTime = time.  Back: effectiveDateTime -> time; a
    period's end (else its start) -> time, and start + end -> the administration duration, unless the
    dose's rateRatio already gave one (hook doseAndRate runs first: when they differ the rate wins and
    the period start is reported)."""
    entry = ctx.archetype
    steps = rmpath.parse(_DURATION_PATH)
    if direction == FWD:
        t = (entry.get("time") or {}).get("value")
        if not t:
            return
        dur = next((e.get("value") for e in rmpath.find(entry, steps)), None)
        td = dt.parse_duration((dur or {}).get("value", "")) if isinstance(dur, dict) else None
        end = dt.datetime_to_fhir(t)
        if td is not None and dt.parse_dt(end) is not None:
            fobj["effectivePeriod"] = {"start": _like(end, dt.parse_dt(end) - td), "end": end}
        else:
            fobj["effectiveDateTime"] = end
        return
    single = fobj.get("effectiveDateTime")
    period = fobj.get("effectivePeriod") or {}
    t = single or period.get("end") or period.get("start")
    if not t:
        return
    entry["time"] = {"_type": "DV_DATE_TIME", "value": t}
    start, end = period.get("start"), period.get("end")
    if start and end and dt.parse_dt(start) and dt.parse_dt(end) and dt.parse_dt(end) >= dt.parse_dt(start) \
            and not rmpath.find(entry, steps):
        cluster = rmpath.ensure(entry, rmpath.parse("description[at0017,'Tree']/items[openEHR-EHR-CLUSTER.dosage.v2,"
                                                    "'Dosage']"))
        cluster.setdefault("items", []).append(
            {"_type": "ELEMENT", "name": {"_type": "DV_TEXT", "value": "Administration duration"},
             "archetype_node_id": "at0102",
             "value": {"_type": "DV_DURATION", "value": dt.format_duration(dt.parse_dt(end) - dt.parse_dt(start))}})
