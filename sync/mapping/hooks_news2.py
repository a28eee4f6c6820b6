"""Hooks (``mappingCode``) of the early warning rows: OBSERVATION.news2.v1 (NEWS2) and OBSERVATION.acvpu.v1 (ACVPU).

Codes and shapes as the NHS England NEWS2 FHIR example in the corpus sends them (fhir/news2_vitals_observations):
the total score Observation is SNOMED CT (UK) 1104051000000101, its value a Quantity of UCUM ``{ScoreOf}``, one
component per parameter score with the parameter's SNOMED CT score concept; the ACVPU Observation is 1104441000000107.

``news2Scores``: total score at0028 (DV_COUNT) <-> valueQuantity; each parameter's score (DV_ORDINAL, the
archetype's bands) <-> a component whose value is the ordinal.  Back, a score gives its element only when it names
one band of that parameter: a pulse score 1 is '41-50' or '91-110', a temperature score 1 '35.1-36.0' or
'38.1-39.0', and nothing says which, so no band is written (never a guessed one) and from_fhir reports the component
lost; a FHIR-born original stays in the feeder audit and goes back to FHIR as sent.  SpO2 Scale 2 (at0047) has no
score concept in the example: it and the clinical risk category at0056 stay in the residue.

``acvpuScore``: ACVPU at0004 (DV_CODED_TEXT, five at-codes) <-> valueCodeableConcept as the openEHR local code (our
openehr-local system) and its rubric.  Back, only those codes: another system's code, the example's own bare 'local'
at0007 'Mentally alert' among them (at0007 is 'Pain' here), is not read as an at-code; the value is reported lost
and a composition without it fails the template's 1..1 (the engine dead-letters it for a person).
"""
from __future__ import annotations

from . import datatypes as dt
from . import rmpath
from .runtime import FWD
from .terminology import LOCAL_SYSTEM

SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
TREE = rmpath.Step("data", "at0003", "Tree")
TOTAL = ("at0028", "Total score")
# parameter element -> (name, SNOMED CT score concept, display, {ordinal: (at-code, rubric) of each band})
PARAMETERS = {
    "at0006": ("Respiration rate", "1104301000000104",
               "Royal College of Physicians NEWS2 (National Early Warning Score 2) - respiration rate score",
               {3: (("at0021", "≤8"), ("at0064", "≥25")), 1: (("at0019", "9-11"),), 0: (("at0018", "12-20"),),
                2: (("at0020", "21-24"),)}),
    "at0029": ("SpO₂ Scale 1", "1104311000000102",
               "Royal College of Physicians NEWS2 (National Early Warning Score 2) - oxygen saturation scale 1 score",
               {3: (("at0033", "≤91"),), 2: (("at0032", "92-93"),), 1: (("at0031", "94-95"),), 0: (("at0030", "≥96"),)}),
    "at0034": ("Air or oxygen?", "1104331000000105",
               "Royal College of Physicians NEWS2 (National Early Warning Score 2) - air or oxygen score",
               {0: (("at0036", "Air"),), 2: (("at0037", "Oxygen"),)}),
    "at0004": ("Systolic blood pressure", "1104341000000101",
               "Royal College of Physicians NEWS2 (National Early Warning Score 2) - systolic blood pressure score",
               {3: (("at0017", "≤90"), ("at0067", "≥220")), 2: (("at0016", "91-100"),), 1: (("at0015", "101-110"),),
                0: (("at0014", "111-219"),)}),
    "at0005": ("Pulse", "1104351000000103",
               "Royal College of Physicians NEWS2 (National Early Warning Score 2) - pulse score",
               {3: (("at0010", "≤40"), ("at0065", "≥131")), 1: (("at0012", "41-50"), ("at0068", "91-110")),
                0: (("at0013", "51-90"),), 2: (("at0011", "111-130"),)}),
    "at0008": ("Consciousness", "1104361000000100",
               "Royal College of Physicians NEWS2 (National Early Warning Score 2) - consciousness score",
               {0: (("at0024", "Alert"),), 3: (("at0025", "C, V, P or U"),)}),
    "at0007": ("Temperature", "1104371000000107",
               "Royal College of Physicians NEWS2 (National Early Warning Score 2) - temperature score",
               {3: (("at0039", "≤35.0"),), 1: (("at0023", "35.1-36.0"), ("at0066", "38.1-39.0")),
                0: (("at0022", "36.1-38.0"),), 2: (("at0038", "≥39.1"),)}),
}
BY_CONCEPT = {concept: node for node, (_, concept, _, _) in PARAMETERS.items()}
ACVPU = ("at0004", "ACVPU")
ACVPU_CODES = {"at0005": "Alert", "at0015": "Confusion", "at0006": "Voice", "at0007": "Pain", "at0008": "Unresponsive"}


def _items(event: dict) -> dict[str, dict]:
    return {i.get("archetype_node_id"): i for i in ((event.get("data") or {}).get("items") or []) if isinstance(i, dict)}


def _score(n) -> dict:
    return {"value": n, "unit": "ScoreOf", "system": UCUM, "code": "{ScoreOf}"}


def _whole(q) -> int | None:
    """A score's integer value, from a Quantity (an integral decimal too: 2.0 is 2)."""
    v = (q or {}).get("value") if isinstance(q, dict) else None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or v < 0:
        return None
    return int(v)


def news2_scores(ctx, rule, onode, fobj, fmodel, direction):
    obs = ctx.resource
    if direction == FWD:
        items = _items(onode)
        total = (items.get(TOTAL[0]) or {}).get("value") or {}
        if total.get("_type") == "DV_COUNT" and isinstance(total.get("magnitude"), int):
            obs["valueQuantity"] = _score(total["magnitude"])
        components = []
        for node, (_, concept, display, bands) in PARAMETERS.items():
            value = (items.get(node) or {}).get("value") or {}
            if value.get("_type") == "DV_ORDINAL" and value.get("value") in bands:
                components.append({"code": {"coding": [{"system": SNOMED, "code": concept, "display": display}]},
                                   "valueQuantity": _score(value["value"])})
        if components:
            obs["component"] = components
        return
    for comp in obs.get("component") or []:
        concept = next((c.get("code") for c in (comp.get("code") or {}).get("coding") or []
                        if c.get("system") == SNOMED and c.get("code") in BY_CONCEPT), None)
        n = _whole(comp.get("valueQuantity"))
        if concept is None or n is None:
            continue
        node = BY_CONCEPT[concept]
        name, _, _, bands = PARAMETERS[node]
        if len(bands.get(n, ())) != 1:  # no band, or several: the score alone does not say which
            continue
        [(code, rubric)] = bands[n]
        rmpath.ensure(onode, [TREE, rmpath.Step("items", node, name)])["value"] = {
            "_type": "DV_ORDINAL", "value": n, "symbol": dt.coded_text(rubric, "local", code)}
    total = _whole(obs.get("valueQuantity"))
    if total is not None:
        rmpath.ensure(onode, [TREE, rmpath.Step("items", *TOTAL)])["value"] = {"_type": "DV_COUNT", "magnitude": total}


def acvpu_score(ctx, rule, onode, fobj, fmodel, direction):
    obs = ctx.resource
    if direction == FWD:
        value = (_items(onode).get(ACVPU[0]) or {}).get("value") or {}
        if value.get("_type") == "DV_CODED_TEXT":
            obs["valueCodeableConcept"] = dt.coded_to_fhir(value)
        return
    cc = obs.get("valueCodeableConcept") or {}
    code = next((c.get("code") for c in cc.get("coding") or []
                 if c.get("system") == LOCAL_SYSTEM and c.get("code") in ACVPU_CODES), None)
    if code is not None:
        rubric = cc.get("text") or ACVPU_CODES[code]
        rmpath.ensure(onode, [TREE, rmpath.Step("items", *ACVPU)])["value"] = dt.coded_text(rubric, "local", code)
