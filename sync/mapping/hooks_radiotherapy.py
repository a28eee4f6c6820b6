"""Hooks (``mappingCode``) of the radiotherapy row: CLUSTER.radiotherapy.v0 in ACTION.procedure.v1's
'Procedure detail' slot (its CKM use) <-> the mCODE STU4 RadiotherapyCourseSummary extensions of the Procedure.

The cluster (one per irradiated target region) is no resource: mCODE says a course by extensions on the
Procedure.  The cluster file maps each cluster inline into one ``doseDeliveredToVolume`` extension (the slot
rule reads those back, one cluster each); ``radiotherapyVolume`` fills it and adds the cluster's modalities:

* ``doseDeliveredToVolume``: volume = the target region (a display-only Reference: no BodyStructure is
  made; none recorded -> the cluster's name, as volume is 1..1), total dose in Gy -> ``totalDoseDelivered``
  in cGy (x100), number of fractions -> ``fractionsDelivered``.  GyE and activities (GBq, MBq, kBq) have no
  home there: residue.
* ``modalityAndTechnique`` per type of radiation, placed on the Procedure before the cluster's dose
  extension: treatment method + type of radiation -> the SNOMED CT code of mCODE STU4's teleradiotherapy /
  brachytherapy modality value sets (``MODALITY``: teletherapy with photons, electrons, neutrons, protons
  or carbon ions; metabolic therapy -> administration of radiopharmaceutical).  What the value sets do not
  name (brachytherapy without its dose rate, helium ions, alpha/beta/gamma rays, other) is NullFlavor UNC
  with the text, as mCODE's own examples do; the application types (free text) are its techniques, UNC +
  text.  Back, the modality extensions before a dose extension (after the previous one) are that cluster's:
  a central course listing all modalities first gives them to the first target region.

``radiotherapyCourse`` (the procedure file, forward): ``actualNumberOfSessions`` = the number of fractions
when the procedure has one target region (several regions may share sessions: not derivable), and the
profile, declared only when the Procedure meets its fixed parts: code SNOMED CT 1217123003 (Radiotherapy
course of treatment) and a performedPeriod (the procedure's start datetime).  One way: back, sessions are
not read (our own count is the fractions'; a central course's count comes back from its feeder audit).

The residue keeps the rest: start/end, single dose, fraction detail, toxicity, planning media, the exact
at-codes of a UNC modality.
"""
from __future__ import annotations

from . import datatypes as dt
from . import terminology
from .runtime import FWD

MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"
PROFILE = MCODE + "mcode-radiotherapy-course-summary"
MOD_TECH, MODALITY_EXT, TECHNIQUE_EXT = (MCODE + "mcode-radiotherapy-modality-and-technique",
                                          MCODE + "mcode-radiotherapy-modality", MCODE + "mcode-radiotherapy-technique")
DOSE, SESSIONS = MCODE + "mcode-radiotherapy-dose-delivered-to-volume", MCODE + "mcode-radiotherapy-sessions"
SCT, UNC = "http://snomed.info/sct", "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
COURSE_CODE = "1217123003"
CLUSTER_ID = "openEHR-EHR-CLUSTER.radiotherapy.v0"

METHODS = {"at0048": "Teletherapy", "at0049": "Brachytherapy", "at0050": "Metabolic therapy", "at0051": "Other therapy"}
RADIATION = {"at0032": "Photons (ɣ)", "at0033": "Electrons (e-)", "at0041": "Neutrons (n)", "at0034": "Protons (p+)",
             "at0042": "Helium ions", "at0035": "Carbon ions", "at0036": "Alpha rays (α)", "at0043": "Beta rays (β)",
             "at0044": "Gamma rays (γ)"}
# (treatment method, type of radiation) -> SNOMED CT code of mCODE STU4's modality value sets
MODALITY = {("at0048", "at0032"): ("1156506007", "External beam radiation therapy using photons (procedure)"),
            ("at0048", "at0033"): ("45643008", "External beam radiation therapy using electrons (procedure)"),
            ("at0048", "at0041"): ("80347004", "External beam radiation therapy neutrons (procedure)"),
            ("at0048", "at0034"): ("10611004", "External beam radiation therapy protons (procedure)"),
            ("at0048", "at0035"): ("1156505006", "External beam radiation therapy using carbon ions (procedure)"),
            ("at0050", None): ("440252007", "Administration of radiopharmaceutical (procedure)")}
GY = ("at0022", "Gy")


def _el(node: str, name: str, value: dict) -> dict:
    return {"_type": "ELEMENT", "archetype_node_id": node, "name": {"_type": "DV_TEXT", "value": name}, "value": value}


def _values(items: list, node: str) -> list[dict]:
    return [i["value"] for i in items if i.get("archetype_node_id") == node and isinstance(i.get("value"), dict)]


def _code(dv: dict | None) -> str | None:
    return ((dv or {}).get("defining_code") or {}).get("code_string")


def clusters(entry: dict) -> list[dict]:
    items = (entry.get("description") or {}).get("items") or []
    return [i for i in items if i.get("archetype_node_id") == CLUSTER_ID]


def radiotherapy_volume(ctx, rule, onode, fobj, fmodel, direction):
    if direction == FWD:
        mods, dose = _cluster_extensions(onode)
        ctx.parent.setdefault("extension", []).extend(mods)
        fobj["extension"] = dose["extension"]  # the url is the file's constant
    else:
        _cluster_back(onode, fobj, ctx.parent or {})


def radiotherapy_course(ctx, rule, onode, fobj, fmodel, direction):
    if direction != FWD:
        return
    found = clusters(onode)
    if not found:
        return
    fractions = [v.get("magnitude") for v in _values(found[0].get("items") or [], "at0014")]
    if len(found) == 1 and fractions and isinstance(fractions[0], int) and fractions[0] >= 0:
        fobj.setdefault("extension", []).append({"url": SESSIONS, "valueUnsignedInt": fractions[0]})
    coded = any(c.get("system") == SCT and c.get("code") == COURSE_CODE
                for c in (fobj.get("code") or {}).get("coding") or [])
    if coded and "performedPeriod" in fobj:
        fobj.setdefault("meta", {}).setdefault("profile", []).append(PROFILE)


# ------------------------------------------------------------------ forward
def _modality(method: dict | None, radiation: dict | None) -> dict:
    method_code = _code(method)
    hit = MODALITY.get((method_code, None)) or MODALITY.get((method_code, _code(radiation)))
    if hit:
        return {"coding": [{"system": SCT, "code": hit[0], "display": hit[1]}]}
    text = " ".join(v["value"] for v in (method, radiation) if v and v.get("value"))
    return {"coding": [{"system": UNC, "code": "UNC", "display": "un-encoded"}], "text": text or "radiotherapy"}


def _technique(dv: dict) -> dict:
    return {"url": TECHNIQUE_EXT, "valueCodeableConcept": {
        "coding": [{"system": UNC, "code": "UNC", "display": "un-encoded"}], "text": dv["value"]}}


def _cluster_extensions(cluster: dict) -> tuple[list[dict], dict]:
    items = cluster.get("items") or []
    method = next(iter(_values(items, "at0047")), None)
    radiations = _values(items, "at0027") or ([None] if method else [])
    techniques = [_technique(v) for v in _values(items, "at0005") if v.get("value")]
    mods = [{"url": MOD_TECH, "extension": [{"url": MODALITY_EXT, "valueCodeableConcept": _modality(method, rad)}]
             + (techniques if k == 0 else [])} for k, rad in enumerate(radiations)]
    region = next(iter(_values(items, "at0001")), None)
    dose = [{"url": "volume", "valueReference": {"display": (region or {}).get("value") or cluster["name"]["value"]}}]
    total = next((c for c in items if c.get("archetype_node_id") == "at0011"), None)
    if total:
        mag, unit = _values(total.get("items") or [], "at0012"), _values(total.get("items") or [], "at0013")
        if mag and unit and _code(unit[0]) == GY[0] and mag[0].get("magnitude") is not None:
            cgy = round(mag[0]["magnitude"] * 100, 3)
            dose.append({"url": "totalDoseDelivered", "valueQuantity": {
                "value": int(cgy) if cgy == int(cgy) else cgy, "unit": "cGy", "system": terminology.UCUM, "code": "cGy"}})
    fractions = next((v.get("magnitude") for v in _values(items, "at0014")), None)
    if isinstance(fractions, int) and fractions >= 0:
        dose.append({"url": "fractionsDelivered", "valueUnsignedInt": fractions})
    return mods, {"url": DOSE, "extension": dose}


# ------------------------------------------------------------------ reverse
def _subs(ext: dict) -> list[tuple[str, dict]]:
    return [(s.get("url"), s) for s in ext.get("extension") or []]


def _modality_back(cc: dict) -> tuple[dict | None, dict | None]:
    """(treatment method, type of radiation) DV values of a modality CodeableConcept."""
    sct = next((c.get("code") for c in cc.get("coding") or [] if c.get("system") == SCT), None)
    key = next((k for k, v in MODALITY.items() if v[0] == sct), None)
    if key is None:
        return None, ({"_type": "DV_TEXT", "value": cc["text"]} if cc.get("text") else None)
    method = dt.coded_text(METHODS[key[0]], "local", key[0])
    return method, (dt.coded_text(RADIATION[key[1]], "local", key[1]) if key[1] else None)


def _own_modalities(parent: dict, dose: dict) -> list[dict]:
    """The modality extensions after the previous dose extension and before this one."""
    own: list[dict] = []
    for e in parent.get("extension") or []:
        if e is dose:
            return own
        if e.get("url") == DOSE:
            own = []
        elif e.get("url") == MOD_TECH:
            own.append(e)
    return []


def _cluster_back(cluster: dict, dose: dict, parent: dict) -> None:
    items = cluster.setdefault("items", [])
    for url, sub in _subs(dose):
        if url == "volume" and (sub.get("valueReference") or {}).get("display"):
            items.append(_el("at0001", "Target region", {"_type": "DV_TEXT", "value": sub["valueReference"]["display"]}))
        elif url == "totalDoseDelivered" and (sub.get("valueQuantity") or {}).get("code") == "cGy":
            gy = sub["valueQuantity"]["value"] / 100
            items.append({"_type": "CLUSTER", "archetype_node_id": "at0011", "name": {"_type": "DV_TEXT", "value": "Total dose"},
                          "items": [_el("at0012", "Dose (SD)", {"_type": "DV_QUANTITY", "magnitude": gy, "units": "1"}),
                                    _el("at0013", "Unit (SD)", dt.coded_text(GY[1], "local", GY[0]))]})
        elif url == "fractionsDelivered" and isinstance(sub.get("valueUnsignedInt"), int):
            items.append(_el("at0014", "Number of dose fractions", {"_type": "DV_COUNT", "magnitude": sub["valueUnsignedInt"]}))
    for mod in _own_modalities(parent, dose):
        for url, sub in _subs(mod):
            if url == MODALITY_EXT:
                method, radiation = _modality_back(sub.get("valueCodeableConcept") or {})
                if method and not _values(items, "at0047"):
                    items.append(_el("at0047", "Treatment method", method))
                if radiation:
                    items.append(_el("at0027", "Type of radiation", radiation))
            elif url == TECHNIQUE_EXT and (sub.get("valueCodeableConcept") or {}).get("text"):
                items.append(_el("at0005", "Application type", {"_type": "DV_TEXT", "value": sub["valueCodeableConcept"]["text"]}))
