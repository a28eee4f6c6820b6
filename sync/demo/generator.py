"""Seeded generator of SYNTHETIC oncology patients as FLAT compositions for the oncology template.

Nothing here describes a real person: subjects are ``SYN-nnnnnn`` in namespace
``conflictdesk-synthetic``, composers and facilities are role labels, and every clinical value is
drawn from ``catalogue`` by a ``random.Random`` seeded from (seed, subject id). The same seed
gives byte-identical output; times derive from a fixed epoch, never from the clock (only the
trickle helpers take a ``when``).

A patient's story, one composition per clinical contact (``Event.key``):

* ``diagnosis``: biopsy (ACTION completed), the resection as planned (ACTION 526/at0004, or
  scheduled 529/at0036), cancer diagnosis with clinical TNM, baseline vitals, haemoglobin and the
  cancer's tumour marker (raised); for about one patient in four a known allergy or intolerance; for
  prostate cancer the biopsy's pathology report with its Gleason score (from the histology's pattern); for
  lung adenocarcinoma the molecular report (EGFR exon 19 deletion present or absent, as the histology says).
* ``diagnosis.v2``: the same composition revised after surgery: pathological TNM added
  (``revises="diagnosis"``: committed as a new version, not a new composition).
* ``surgery``: the resection completed (532/at0043); sometimes a postponement first
  (527/at0038); post-operative vitals as a series of events; recurrence risk assessment; for breast and
  colorectal cancer the specimen's pathology report counting the lymph nodes examined and involved, as pN says
  (catalogue.NODE_COUNTS; a stream of its own); every resection's report gives its microscopic examination (the
  histology as the finding, pT/pN/R in the description), states its margins as R says (not for ovarian cancer), for
  colorectal cancer the direct invasion of the pericolorectal tissues as pT says (catalogue.MARGIN_NAMES, INVASION)
  and, for ovarian cancer, the FIGO stage (the pathological stage group; catalogue.FIGO).
* ``treatment``: the tumour board's care plan with one or two anticancer medication orders (dose,
  route, ISO 8601 timing), a referral (radiotherapy; for ovarian cancer genetic
  counselling and germline BRCA testing) and the goal (curative or palliative); ECOG and
  Karnofsky performance status, vitals, haemoglobin and neutrophils.
* ``follow_up.N`` (1-3): performance status, a dose of the plan's first agent given, vitals and labs,
  the marker falling towards normal; at the first, for breast cancer without metastases, the referred
  radiotherapy course completed (40 Gy in 15 fractions); at about one follow-up in three a toxicity of
  the treatment graded by CTCAE (a problem_diagnosis with CLUSTER.ctcae.v1, mostly grade 1-2; drawn from
  a stream of its own, so the rest of the story is the same with or without it).

Metastatic (cM1) patients, about one in ten, get no resection and no pTNM: their story is
diagnosis, treatment and follow-ups.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from . import catalogue as cat
from .flat import TEMPLATE_ID, FlatComposition, iso

# Not "conflictdesk.synthetic": the RM invariant on PARTY_REF.namespace ([a-zA-Z][a-zA-Z0-9-_:/&+?]*)
# has no dot, and EHRbase answers 400 to one.
SUBJECT_NAMESPACE = "conflictdesk-synthetic"
EPOCH = datetime(2024, 1, 8, 8, 0, tzinfo=timezone(timedelta(hours=1)))
TNM_EDITION = "UICC TNM 8th edition"

__all__ = ["SUBJECT_NAMESPACE", "TEMPLATE_ID", "Event", "Patient", "subject_id", "generate_patient",
           "generate_patients", "vital_signs_composition", "lab_composition", "trickle_composition"]


@dataclass(frozen=True)
class Event:
    """One composition to commit. ``revises`` names the event whose composition this one updates."""

    key: str
    kind: str
    when: datetime
    flat: dict[str, Any]
    revises: str | None = None


@dataclass
class Patient:
    subject_id: str
    cancer: str
    facility: str
    summary: dict[str, Any]
    events: list[Event] = field(default_factory=list)


def subject_id(index: int, prefix: str = "SYN") -> str:
    return f"{prefix}-{index:06d}"


def generate_patients(n: int, seed: int, *, first_index: int = 0, prefix: str = "SYN",
                      facility: str = "Synthetic Oncology Centre") -> list[Patient]:
    """``n`` patients, ``prefix-first_index`` onwards; each depends only on (seed, its subject id)."""
    return [generate_patient(seed, subject_id(first_index + i, prefix), facility=facility) for i in range(n)]


def generate_patient(seed: int, subject: str, *, facility: str = "Synthetic Oncology Centre",
                     sex: str | None = None) -> Patient:
    """``sex``: a registered person's (people.CAST); their cancer is one a person of that sex can have."""
    rng = random.Random(f"{seed}|{subject}")
    cancer = cat.CANCERS[rng.choice(sorted(k for k, c in cat.CANCERS.items() if sex is None or sex in c.sexes))]
    site = rng.choice(cancer.sites)
    histology = rng.choice(cancer.histology)
    t = _weighted(rng, cancer.t_choices)
    n = _weighted(rng, cancer.n_choices)
    m = "M1" if rng.random() < 0.1 else "M0"
    gg = cat.grade_group_of(histology)
    # Prostate is graded by ISUP Grade Group, the others by histopathological grade G1-G3.
    grade = f"Grade Group {gg}" if cancer.key == "prostate" else rng.choice(["G1", "G2", "G2", "G3"])
    clinical = {"t": t, "n": n, "m": m, "g": grade, "stage": cat.stage_group(cancer.key, t, n, m, gg)}
    vitals = _baseline_vitals(rng)
    clinician = f"Synthetic oncology clinician {rng.randint(1, 40):02d}"
    patient = Patient(subject, cancer.key, facility, {"site": site.description, "histology": histology,
                                                        "cTNM": clinical})
    diagnosed = EPOCH + timedelta(days=rng.randint(0, 420), hours=rng.randint(0, 8), minutes=rng.choice([0, 15, 30, 45]))
    ctx = _Ctx(rng, cancer, site, histology, clinical, vitals, facility, clinician)
    ctx.toxicity_rng = random.Random(f"{seed}|{subject}|toxicity")
    ctx.nodes_rng = random.Random(f"{seed}|{subject}|nodes")
    patient.events.append(ctx.diagnosis_event(diagnosed))
    when = diagnosed
    if m == "M0":
        when = diagnosed + timedelta(days=rng.randint(14, 35))
        pathological = ctx.pathological(gg)
        patient.summary["pTNM"] = pathological
        patient.events.append(ctx.diagnosis_event(diagnosed, pathological=pathological, revised=when))
        patient.events.append(ctx.surgery_event(when, pathological))
    when = when + timedelta(days=rng.randint(21, 42))
    agents = ctx.pick_agents(metastatic=m != "M0")
    patient.summary["agents"] = [a.item.value for a in agents]
    patient.events.append(ctx.treatment_event(when, agents))
    for k in range(1, rng.randint(1, 3) + 1):
        when = when + timedelta(days=rng.randint(60, 100))
        patient.events.append(ctx.follow_up_event(when, k))
    return patient


def _weighted(rng: random.Random, choices: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def _baseline_vitals(rng: random.Random) -> dict[str, float]:
    return {"systolic": rng.gauss(126, 12), "diastolic": rng.gauss(78, 8), "pulse": rng.gauss(74, 9),
            "temperature": rng.gauss(36.7, 0.2), "respiration": rng.gauss(15, 2), "spo2": rng.gauss(97, 1)}


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


# Plausible ranges (adult, ambulatory oncology); tests/demo asserts every value stays inside.
VITAL_RANGES = {"systolic": (90, 180), "diastolic": (50, 110), "pulse": (48, 120), "temperature": (35.8, 38.6),
                "respiration": (10, 26), "spo2": (90, 100)}


class _Ctx:
    """One patient's fixed facts plus the rng; each method builds one composition."""

    def __init__(self, rng, cancer, site, histology, clinical, vitals, facility, clinician):
        self.rng, self.cancer, self.site, self.histology = rng, cancer, site, histology
        self.clinical, self.vitals, self.facility, self.clinician = clinical, vitals, facility, clinician
        self.marker_level = rng.uniform(*cancer.marker.raised)
        self.ecog = rng.choice([0, 0, 1, 1, 2]) if clinical["m"] != "M0" else rng.choice([0, 0, 0, 1])
        self.agents: list[cat.Agent] = []
        self.planned: datetime | None = None  # when the tumour board planned the treatment
        self.allergy = rng.choice(cat.ALLERGIES) if rng.random() < 0.25 else None
        self.toxicity_rng = random.Random(0)  # generate_patient gives each patient its own (as nodes_rng)
        self.nodes_rng = random.Random(0)

    def _flat(self, when: datetime) -> FlatComposition:
        return FlatComposition(when, facility=self.facility, composer=self.clinician)

    # --- events -----------------------------------------------------------------------------
    def diagnosis_event(self, when, *, pathological=None, revised=None) -> Event:
        flat = self._flat(when)
        add_vitals(flat, self.rng, when, self.vitals)
        lab_time = when - timedelta(days=2, hours=1)
        add_lab(flat, lab_time, cat.HAEMOGLOBIN, round(self.rng.uniform(*cat.HAEMOGLOBIN.normal), 1))
        add_lab(flat, lab_time, self.cancer.marker, _rounded(self.marker_level, self.cancer.marker.decimals))
        add_procedure(flat, when - timedelta(days=9), self.cancer.biopsy, self.site, "532",
                      indication=f"Suspected {self.cancer.anatomical_site.lower()} malignancy",
                      outcome="Tissue obtained for histology")
        if self.clinical["m"] == "M0":
            state = self.rng.choice(["526", "529"])
            add_procedure(flat, when, self.cancer.resection, self.site, state if revised is None else "532",
                          indication=self.diagnosis_text())
        gleason = cat.gleason_of(self.histology)
        if gleason is not None:  # the biopsy's pathology report (prostate): its Gleason score
            add_pathology_report(flat, when - timedelta(days=5), cat.PROSTATE_BIOPSY_REPORT, gleason)
        egfr = cat.egfr_finding_of(self.histology)
        if egfr is not None:  # the tumour's molecular report (lung adenocarcinoma): the EGFR variant found or not
            add_molecular_report(flat, when - timedelta(days=3), egfr)
        add_diagnosis(flat, self, when, pathological)
        if self.allergy is not None:
            add_allergy(flat, when, self.allergy)
        if revised is not None:
            return Event("diagnosis.v2", "diagnosis", revised, flat.build(), revises="diagnosis")
        return Event("diagnosis", "diagnosis", when, flat.build())

    def surgery_event(self, when, pathological) -> Event:
        flat = self._flat(when)
        if self.rng.random() < 0.25:
            add_procedure(flat, when - timedelta(days=7), self.cancer.resection, self.site, "527",
                          indication=self.diagnosis_text(), outcome="Postponed: theatre capacity")
        residual = pathological["r"]
        add_procedure(flat, when, self.cancer.resection, self.site, "532", indication=self.diagnosis_text(),
                      outcome=f"Tumour excised, residual tumour {residual}")
        for hours in (2, 6, 12):
            add_vitals(flat, self.rng, when + timedelta(hours=hours), self.vitals, post_op=True)
        counted = cat.NODE_COUNTS.get(self.cancer.key)
        report = None
        if counted and pathological["n"] in cat.POSITIVE_NODES:  # the resection specimen's lymph nodes
            site, examined = counted
            positive = self.nodes_rng.randint(*cat.POSITIVE_NODES[pathological["n"]])
            report = add_node_report(flat, when + timedelta(days=4), f"{self.cancer.resection.value}, histopathology",
                                     site, max(positive, self.nodes_rng.randint(*examined)), positive)
        # the same report's margins (as R says) and direct invasion (as pT says); no random draw
        add_resection_findings(flat, report or add_report(flat, when + timedelta(days=4),
                                                          f"{self.cancer.resection.value}, histopathology"),
                               self.cancer.key, pathological, self.histology)
        add_risk(flat, self, when, pathological)
        self.marker_level = self.marker_level * self.rng.uniform(0.3, 0.6)
        return Event("surgery", "surgery", when, flat.build())

    def treatment_event(self, when, agents) -> Event:
        """The tumour board's plan: the orders, a referral (catalogue.REFERRALS) and the goal, with the patient's
        performance status at the visit (the plan's activities are the orders and referral beside it)."""
        flat = self._flat(when)
        intent = agents[0].intent if agents[0].intent == "palliative" else "curative"
        add_care_plan(flat, when, f"{intent.capitalize()} treatment plan", self.diagnosis_text(),
                      "; ".join(a.item.value for a in agents))
        add_plan_scheduled(flat, when, f"{intent.capitalize()} treatment plan")
        for agent in agents:
            add_medication_order(flat, self.rng, when + timedelta(days=1), agent, self.diagnosis_text())
        self.planned = when
        add_referral(flat, when + timedelta(days=14), *cat.REFERRALS[self.cancer.key], self.diagnosis_text())
        add_goal(flat, cat.PLAN_GOALS[intent], when + timedelta(days=365 * (5 if intent == "curative" else 1)))
        add_performance_status(flat, self.rng, when, self.ecog)
        add_vitals(flat, self.rng, when, self.vitals)
        add_lab(flat, when - timedelta(days=1), cat.HAEMOGLOBIN, round(self.rng.uniform(10.5, 14.5), 1))
        add_lab(flat, when - timedelta(days=1), cat.NEUTROPHILS, round(self.rng.uniform(*cat.NEUTROPHILS.normal), 1))
        return Event("treatment", "treatment", when, flat.build())

    def follow_up_event(self, when, k: int) -> Event:
        flat = self._flat(when)
        add_vitals(flat, self.rng, when, self.vitals)
        add_performance_status(flat, self.rng, when, self.ecog)
        if self.agents:  # the plan's first agent, a dose given at this visit
            add_dose_given(flat, when, self.agents[0], self.diagnosis_text())
            if self.toxicity_rng.random() < 0.35:  # a toxicity of it, graded by CTCAE
                add_toxicity(flat, self.toxicity_rng, when - timedelta(days=self.toxicity_rng.randint(3, 20)))
        course = cat.RADIOTHERAPY_COURSES.get(self.cancer.key)
        if k == 1 and course and self.clinical["m"] == "M0" and self.planned:  # the referred course, done since the plan
            add_radiotherapy(flat, self.planned + timedelta(days=14), course, self.site.description,
                             self.diagnosis_text())
        anaemic = self.rng.random() < 0.3
        add_lab(flat, when - timedelta(days=1), cat.HAEMOGLOBIN,
                round(self.rng.uniform(*(cat.HAEMOGLOBIN.raised if anaemic else cat.HAEMOGLOBIN.normal)), 1))
        marker = self.cancer.marker
        self.marker_level = max(marker.normal[0], self.marker_level * self.rng.uniform(0.5, 0.95))
        add_lab(flat, when - timedelta(days=1), marker, _rounded(self.marker_level, marker.decimals))
        return Event(f"follow_up.{k}", "follow_up", when, flat.build())

    # --- facts ------------------------------------------------------------------------------
    def diagnosis_text(self) -> str:
        return f"{self.histology.split(',')[0]} of {self.site.description}"

    def pathological(self, grade_group: int) -> dict[str, str]:
        """pT/pN near the clinical estimate (one step either way, now and then)."""
        c, rng = self.clinical, self.rng
        t_options = [t for t, _ in self.cancer.t_choices]
        i = t_options.index(c["t"]) + rng.choice([-1, 0, 0, 0, 1])
        t = t_options[max(0, min(len(t_options) - 1, i))]
        n_options = [n for n, _ in self.cancer.n_choices]
        j = n_options.index(c["n"]) + rng.choice([0, 0, 0, 1])
        n = n_options[min(len(n_options) - 1, j)]
        pn = "pN1a" if n == "N1" and self.cancer.key == "breast" else f"p{n}"
        r = rng.choices(["R0", "R1"], weights=[9, 1])[0]
        return {"t": f"p{t}", "n": pn, "m": "cM0", "g": c["g"], "r": r,
                "l": rng.choice(["L0", "L0", "L1"]), "v": rng.choice(["V0", "V0", "V1"]),
                "stage": cat.stage_group(self.cancer.key, t, n, "M0", grade_group)}

    def pick_agents(self, *, metastatic: bool) -> list[cat.Agent]:
        agents = [a for a in self.cancer.agents if a.needs is None or a.needs in self.histology]
        first = self.rng.choice(agents)
        chosen = [first]
        if len(agents) > 1 and self.rng.random() < 0.3:
            second = self.rng.choice([a for a in agents if a is not first])
            chosen.append(second)
        if metastatic:
            chosen = [dataclasses.replace(a, intent="palliative") for a in chosen]
        self.agents = chosen
        return chosen


def _rounded(value: float, decimals: int) -> float:
    return float(round(value, decimals))


# --- entry builders (shared by patients and the trickle) ------------------------------------
def add_vitals(flat: FlatComposition, rng: random.Random, when: datetime, base: dict[str, float],
               *, post_op: bool = False) -> None:
    """One event each of BP, pulse, temperature, respiration and SpO2 around the patient's baseline."""
    t = iso(when)
    r = VITAL_RANGES
    sys_ = round(_clamp(base["systolic"] + rng.gauss(0, 6), *r["systolic"]))
    dia = round(_clamp(min(base["diastolic"] + rng.gauss(0, 4), sys_ - 25), *r["diastolic"]))
    pulse = round(_clamp(base["pulse"] + rng.gauss(8 if post_op else 0, 5), *r["pulse"]))
    temp = round(_clamp(base["temperature"] + rng.gauss(0.3 if post_op else 0, 0.2), *r["temperature"]), 1)
    resp = round(_clamp(base["respiration"] + rng.gauss(0, 1.5), *r["respiration"]))
    spo2 = round(_clamp(base["spo2"] + rng.gauss(-1 if post_op else 0, 0.8), *r["spo2"]))
    bp = flat.entry("blood_pressure")
    flat.set(f"{bp}/any_event:0/time", t)
    flat.quantity(f"{bp}/any_event:0/systolic", float(sys_), "mm[Hg]")
    flat.quantity(f"{bp}/any_event:0/diastolic", float(dia), "mm[Hg]")
    for node, element, value in (("pulse_heart_beat", "rate", pulse), ("respiration", "rate", resp)):
        path = flat.entry(node)
        flat.set(f"{path}/any_event:0/time", t)
        flat.quantity(f"{path}/any_event:0/{element}", float(value), "/min")
    path = flat.entry("body_temperature")
    flat.set(f"{path}/any_event:0/time", t)
    flat.quantity(f"{path}/any_event:0/temperature", temp, "Cel")
    path = flat.entry("pulse_oximetry")
    flat.set(f"{path}/any_event:0/time", t)
    flat.set(f"{path}/any_event:0/spo", numerator=float(spo2), denominator=100.0, type=2)


def add_lab(flat: FlatComposition, when: datetime, marker: cat.Marker, value: float, *,
            unit: str | None = None) -> None:
    """One laboratory_test_result with a single analyte (status Final)."""
    path = flat.entry("laboratory_test_result")
    event = f"{path}/any_event:0"
    flat.set(f"{event}/time", iso(when))
    flat.set(f"{event}/test_name", marker.test_name)
    analyte = f"{event}/laboratory_analyte_result:0"
    flat.coded(f"{analyte}/analyte_name", marker.loinc)
    flat.quantity(f"{analyte}/analyte_result:0/quantity_value", value, unit or marker.unit)
    flat.local(f"{event}/overall_test_status:0", "at0038", "Final")


def add_pathology_report(flat: FlatComposition, when: datetime, test_name: str, gleason: dict[str, int]) -> None:
    """A pathology report (laboratory_test_result, status Final) holding its CLUSTER.gleason_score.v0: primary and
    secondary grade and Grade Group as the archetype's ordinals (at-codes in catalogue.GLEASON_CODES), the total."""
    path = flat.entry("laboratory_test_result")
    event = f"{path}/any_event:0"
    flat.set(f"{event}/time", iso(when))
    flat.set(f"{event}/test_name", test_name)
    score = f"{event}/gleason_score:0"
    for element in ("primary_gleason_grade", "secondary_gleason_grade", "gleason_grade_group"):
        n = gleason[element]
        code, rubric = cat.GLEASON_CODES[element][n - 1]
        flat.set(f"{score}/{element}", code=code, ordinal=n, value=rubric)
    flat.set(f"{score}/total_gleason_score", gleason["total_gleason_score"])
    flat.local(f"{event}/overall_test_status:0", "at0038", "Final")


def add_molecular_report(flat: FlatComposition, when: datetime, found: bool) -> None:
    """A molecular report (status Final) with its CLUSTER.genetic_variant_presence.v0: the EGFR variant, present or absent."""
    path = flat.entry("laboratory_test_result")
    event = f"{path}/any_event:0"
    flat.set(f"{event}/time", iso(when))
    flat.set(f"{event}/test_name", cat.MOLECULAR_REPORT)
    variant = f"{event}/genetic_variant_presence:0"
    flat.set(f"{variant}/variant_name", cat.EGFR_VARIANT)
    flat.local(f"{variant}/finding", *cat.VARIANT_FINDINGS[found])
    flat.local(f"{event}/overall_test_status:0", "at0038", "Final")


def add_node_report(flat: FlatComposition, when: datetime, test_name: str, site: str, examined: int,
                    positive: int) -> str:
    """The resection's pathology report (status Final) with its CLUSTER.lymph_node_metastases.v0: the site, the nodes
    examined and those with tumour (tumour involvement Present / Absent, the archetype's at-codes)."""
    path = flat.entry("laboratory_test_result")
    event = f"{path}/any_event:0"
    flat.set(f"{event}/time", iso(when))
    flat.set(f"{event}/test_name", test_name)
    nodes = f"{event}/lymph_node_metastases:0"
    flat.set(f"{nodes}/lymph_node_site_name", site)
    flat.local(f"{nodes}/tumour_involvement", *(("at0042", "Present") if positive else ("at0029", "Absent")))
    flat.set(f"{nodes}/number_of_nodes_examined", examined)
    flat.set(f"{nodes}/number_of_nodes_with_tumour", positive)
    flat.local(f"{event}/overall_test_status:0", "at0038", "Final")
    return event


def add_report(flat: FlatComposition, when: datetime, test_name: str) -> str:
    """A pathology report (laboratory_test_result, status Final) with its event; returns the event's path."""
    event = f"{flat.entry('laboratory_test_result')}/any_event:0"
    flat.set(f"{event}/time", iso(when))
    flat.set(f"{event}/test_name", test_name)
    flat.local(f"{event}/overall_test_status:0", "at0038", "Final")
    return event


def add_resection_findings(flat: FlatComposition, event: str, cancer: str, pathological: dict, histology: str) -> None:
    """The resection report's microscopic examination (CLUSTER.anatomical_pathology_exam.v0: the tumour's histology
    as its finding, the pathological stage in the description), CLUSTER.tumour_resection_margins.v0 where
    catalogue.MARGIN_NAMES lists the cancer (the specimen's margins: tumour Absent at R0, Present at R1, the
    archetype's at-codes), where catalogue.INVASION lists it its CLUSTER.tumour_invasion.v0 (the tissue, Present when
    pT reaches it, else Absent) and, for a gynaecological cancer (catalogue.FIGO), its CLUSTER.figo_staging_cancer.v1:
    the pathological stage group as the FIGO stage, with the staging criteria and FIGO version."""
    exam = f"{event}/anatomical_pathology_examination:0"
    flat.local(f"{exam}/examination_type", "at0021", "Microscopic examination")
    flat.set(f"{exam}/anatomical_pathology_finding:0/finding_label", "Tumour")
    flat.set(f"{exam}/anatomical_pathology_finding:0/finding_description", histology)
    flat.set(f"{exam}/examination_description",
             f"Resection specimen: {histology}; {pathological['t']} {pathological['n']}, {pathological['r']}.")
    if cancer in cat.MARGIN_NAMES:
        margin = f"{event}/surgical_resection_margins:0"
        flat.set(f"{margin}/margin_name", cat.MARGIN_NAMES[cancer])
        flat.local(f"{margin}/marginal_involvement", *(("at0014", "Present") if pathological["r"] == "R1"
                                                       else ("at0015", "Absent")))
    if cancer in cat.FIGO:
        criteria, rubric, version = cat.FIGO[cancer]
        figo = f"{event}/figo_staging_of_gynaecological_cancer:0"
        flat.local(f"{figo}/staging_criteria", criteria, rubric)
        flat.set(f"{figo}/figo_stage", pathological["stage"])
        flat.set(f"{figo}/figo_version", version)
    if cancer in cat.INVASION:
        tissue, reaching = cat.INVASION[cancer]
        invasion = f"{event}/tumour_-_direct_invasion:0"
        flat.set(f"{invasion}/tissue_name", tissue)
        flat.local(f"{invasion}/direct_invasion", *(("at0004", "Present") if pathological["t"] in reaching
                                                    else ("at0005", "Absent")))


ISM = {  # current state -> (careflow step at-code, its text, state text)
    "526": ("at0004", "Procedure planned", "planned"),
    "529": ("at0036", "Procedure scheduled", "scheduled"),
    "527": ("at0038", "Procedure postponed", "postponed"),
    "528": ("at0039", "Procedure cancelled", "cancelled"),
    "532": ("at0043", "Procedure completed", "completed"),
}


def add_procedure(flat: FlatComposition, when: datetime, name: cat.Code, site: cat.Site, state: str, *,
                  indication: str, outcome: str | None = None) -> None:
    step, step_text, state_text = ISM[state]
    path = flat.entry("procedure")
    flat.set(f"{path}/time", iso(when))
    flat.set(f"{path}/ism_transition/current_state", code=state, value=state_text, terminology="openehr")
    flat.local(f"{path}/ism_transition/careflow_step", step, step_text)
    flat.coded(f"{path}/procedure_name", name)
    flat.coded(f"{path}/body_site:0", site.body_site)
    flat.set(f"{path}/indication:0", indication)
    if outcome and state == "532":
        flat.set(f"{path}/outcome:0", outcome)
    elif outcome:
        flat.set(f"{path}/comment", outcome)


R_CODES = {"RX": "at0008", "R0": "at0009", "R1": "at0010", "R2": "at0011"}
L_CODES = {"LX": "at0013", "L0": "at0014", "L1": "at0015"}
V_CODES = {"VX": "at0017", "V0": "at0018", "V1": "at0019", "V2": "at0020"}


def add_radiotherapy(flat: FlatComposition, start: datetime, course: dict, region: str, indication: str) -> None:
    """A completed radiotherapy course: ACTION.procedure.v1 with its CLUSTER.radiotherapy.v0 (one target region)."""
    end = start + timedelta(days=course["days"])
    path = flat.entry("procedure")
    flat.set(f"{path}/time", iso(end))
    flat.set(f"{path}/ism_transition/current_state", code="532", value="completed", terminology="openehr")
    flat.local(f"{path}/ism_transition/careflow_step", "at0043", "Procedure completed")
    flat.coded(f"{path}/procedure_name", cat.RADIOTHERAPY_COURSE)
    flat.set(f"{path}/start_datetime", iso(start))
    flat.set(f"{path}/end_datetime", iso(end))
    flat.set(f"{path}/indication:0", indication)
    rt = f"{path}/irradiation:0"
    flat.set(f"{rt}/target_region", region)
    flat.local(f"{rt}/treatment_method", *course["method"])
    flat.set(f"{rt}/application_type:0", course["technique"])
    flat.local(f"{rt}/type_of_radiation:0", *course["radiation"])
    flat.quantity(f"{rt}/total_dose/dose_sd", course["total_gy"], "1")
    flat.local(f"{rt}/total_dose/unit_sd", "at0022", "Gy")
    flat.set(f"{rt}/number_of_dose_fractions", course["fractions"])


def add_diagnosis(flat: FlatComposition, ctx: _Ctx, when: datetime, pathological: dict | None) -> None:
    c, cancer = ctx.clinical, ctx.cancer
    path = flat.entry("problem_diagnosis")
    flat.coded(f"{path}/problem_diagnosis_name", cancer.diagnosis)
    # The ICD-10 code travels as a term mapping of the same DV_CODED_TEXT.
    flat.set(f"{path}/problem_diagnosis_name/_mapping:0", match="=")
    flat.set(f"{path}/problem_diagnosis_name/_mapping:0/target", code=ctx.site.icd10, terminology="ICD10")
    flat.coded(f"{path}/body_site:0", ctx.site.body_site)
    flat.set(f"{path}/clinical_description", f"{ctx.histology}; {ctx.site.description}")
    flat.set(f"{path}/date_time_clinically_recognised", iso(when.replace(hour=0, minute=0)))
    flat.local(f"{path}/diagnostic_certainty", "at0076", "Confirmed")
    tnm = f"{path}/tnm_clinical_classification"
    flat.set(f"{tnm}/anatomical_site", cancer.anatomical_site)
    flat.set(f"{tnm}/primary_tumour_t", f"c{c['t']}")
    flat.set(f"{tnm}/regional_lymph_nodes_n", f"c{c['n']}")
    flat.set(f"{tnm}/distant_metastasis_m", f"c{c['m']}")
    flat.set(f"{tnm}/histopathological_grade_g", c["g"])
    flat.set(f"{tnm}/tnm_assessment", f"c{c['t']} c{c['n']} c{c['m']}")
    flat.set(f"{tnm}/stage_grouping", c["stage"])
    flat.set(f"{tnm}/tnm_edition", TNM_EDITION)
    if pathological is None:
        return
    p = pathological
    ptnm = f"{path}/tnm_pathological_classification"
    flat.set(f"{ptnm}/anatomical_site", cancer.anatomical_site)
    flat.set(f"{ptnm}/primary_tumour_pt", p["t"])
    flat.set(f"{ptnm}/regional_lymph_nodes_pn", p["n"])
    flat.set(f"{ptnm}/distant_metastasis_pm", p["m"])
    flat.set(f"{ptnm}/histopathological_grade_g", p["g"])
    flat.local(f"{ptnm}/residual_tumour_r", R_CODES[p["r"]], p["r"])
    flat.local(f"{ptnm}/lymphatic_invasion_l", L_CODES[p["l"]], p["l"])
    flat.local(f"{ptnm}/venous_invasion_v", V_CODES[p["v"]], p["v"])
    flat.set(f"{ptnm}/ptnm_assessment", f"{p['t']} {p['n']} {p['m']} {p['r']}")
    flat.set(f"{ptnm}/stage_grouping", p["stage"])  # the CKM tnm-pathological.v1 of template v2
    flat.set(f"{ptnm}/tnm_edition", TNM_EDITION)


def add_risk(flat: FlatComposition, ctx: _Ctx, when: datetime, pathological: dict) -> None:
    nodes_positive = not pathological["n"].startswith("pN0")
    level = "High" if pathological["stage"].startswith("III") else "Intermediate" if nodes_positive else "Low"
    path = flat.entry("health_risk_assessment")
    flat.set(f"{path}/health_risk", ctx.cancer.risk)
    factors = [(f"Regional lymph node involvement ({pathological['n']})", nodes_positive),
               (f"Residual tumour {pathological['r']}", pathological["r"] != "R0"),
               (f"Histopathological grade {pathological['g']}", pathological["g"] == "G3")]
    for k, (text, present) in enumerate(factors):
        flat.set(f"{path}/risk_factors:{k}/risk_factor", text)
        flat.local(f"{path}/risk_factors:{k}/presence", *(("at0018", "Present") if present else ("at0019", "Absent")))
    flat.set(f"{path}/risk_assessment/text_value", level)
    flat.set(f"{path}/time_period", "P10Y" if ctx.cancer.key == "breast" else "P5Y")
    flat.set(f"{path}/assessment_method", "Clinical judgement from stage, grade and residual tumour")
    flat.set(f"{path}/last_updated", iso(when))


def add_medication_order(flat: FlatComposition, rng: random.Random, start: datetime, agent: cat.Agent,
                         indication: str) -> None:
    path = flat.entry("medication_order")
    order = f"{path}/order:0"
    dose = _fmt(agent.dose)
    every = _every(agent.period)
    flat.coded(f"{order}/medication_item", agent.item)
    flat.coded(f"{order}/route:0", agent.route)
    flat.set(f"{order}/overall_directions_description",
             f"{agent.item.value} {dose} {agent.dose_unit} {agent.route.value.lower()} {every}")
    flat.set(f"{order}/clinical_indication:0", f"{indication}, {agent.intent}")
    direction = f"{order}/therapeutic_direction:0"
    flat.quantity(f"{direction}/dosage/dose_amount/quantity_value", float(agent.dose), "1")
    flat.set(f"{direction}/dosage/dose_unit", agent.dose_unit)
    flat.set(f"{direction}/dosage/dose_description", f"{dose} {agent.dose_unit} per {agent.form} {every}")
    flat.set(f"{direction}/direction_duration/duration_value", agent.duration)
    flat.set(f"{direction}/order_start_date_time", iso(start))
    repeats = "" if agent.repeats is None else str(agent.repeats)
    flat.set(f"{order}/timing", f"R{repeats}/{iso(start)}/{agent.period}", formalism="ISO8601")
    flat.set(f"{order}/action_archetype_id", "openEHR-EHR-ACTION.medication.v1")
    flat.set(f"{path}/narrative", f"{agent.item.value} {dose} {agent.dose_unit} {every} for {agent.duration}")


def add_performance_status(flat: FlatComposition, rng: random.Random, when: datetime, ecog: int) -> None:
    """ECOG and a Karnofsky score that agrees with it (catalogue.KARNOFSKY_FOR_ECOG)."""
    kps = rng.choice(cat.KARNOFSKY_FOR_ECOG[ecog])
    for node, event, element, score, (code, text) in (
            ("ecog_performance_status", "any_event", "ecog_performance_status", ecog, cat.ECOG[ecog]),
            ("karnofsky_performance_status_kps_scale", "any_point_in_time_event", "karnofsky_performance_status",
             kps, cat.KARNOFSKY[kps])):
        path = f"{flat.entry(node)}/{event}:0"
        flat.set(f"{path}/time", iso(when))
        flat.set(f"{path}/{element}", code=code, ordinal=score, value=text)


def add_toxicity(flat: FlatComposition, rng: random.Random, onset: datetime) -> None:
    """A toxicity of the treatment: a problem_diagnosis named by its CTCAE term (text), graded in its
    'Specific details' by CLUSTER.ctcae.v1 (ordinal grade, the at-code the archetype gives it)."""
    category, term = rng.choice(cat.TOXICITIES)
    grade = rng.choices(sorted(cat.CTCAE_GRADES), weights=cat.CTCAE_GRADE_WEIGHTS)[0]
    path = flat.entry("problem_diagnosis")
    flat.set(f"{path}/problem_diagnosis_name", other=term)
    flat.set(f"{path}/date_time_of_onset", iso(onset))
    ctcae = f"{path}/common_terminology_criteria_for_adverse_events_ctcae:0"
    flat.set(f"{ctcae}/category", category)
    flat.set(f"{ctcae}/term", term)
    flat.set(f"{ctcae}/grade_category", code=cat.CTCAE_GRADES[grade], ordinal=grade, value=f"Grade {grade}")
    flat.set(f"{ctcae}/ctcae_version", cat.CTCAE_VERSION)


def add_care_plan(flat: FlatComposition, when: datetime, name: str, indication: str, description: str) -> None:
    path = flat.entry("care_plan_request")
    flat.set(f"{path}/activity/plan_name", name)
    flat.set(f"{path}/activity/description", description)
    flat.set(f"{path}/activity/indication", indication)
    flat.set(f"{path}/activity/date_of_onset", iso(when))
    flat.set(f"{path}/activity/comment", "Agreed at the tumour board")
    flat.set(f"{path}/activity/action_archetype_id", "openEHR-EHR-ACTION.care_plan.v1")
    flat.set(f"{path}/narrative", name)


def add_plan_scheduled(flat: FlatComposition, when: datetime, name: str) -> None:
    """ACTION.care_plan.v0 at careflow step 'Care Plan Scheduled' (state scheduled): the board's plan, its orders
    starting the next day; it acts on the composition's only plan (its CarePlan: active, the step kept exactly)."""
    path = flat.entry("care_plan")
    flat.set(f"{path}/time", iso(when))
    flat.set(f"{path}/ism_transition/current_state", code="529", value="scheduled", terminology="openehr")
    flat.local(f"{path}/ism_transition/careflow_step", "at0018", "Care Plan Scheduled")
    flat.set(f"{path}/care_plan_name", name)  # the RM requires a description: the plan's name is its one element


def add_referral(flat: FlatComposition, due: datetime, service: str, service_type: str, indication: str) -> None:
    path = flat.entry("service_request")
    activity = f"{path}/current_activity:0"
    flat.set(f"{activity}/service_name", service)
    flat.set(f"{activity}/service_type", service_type)
    flat.set(f"{activity}/clinical_indication:0", indication)
    flat.local(f"{activity}/urgency", "at0138", "Routine")
    flat.set(f"{activity}/service_due/date_time_value", iso(due))
    flat.set(f"{activity}/action_archetype_id", "/.*/")
    flat.set(f"{path}/narrative", service)


def add_goal(flat: FlatComposition, name: str, due: datetime) -> None:
    path = flat.entry("goal")
    flat.set(f"{path}/goal_name", name)
    flat.set(f"{path}/target:0/target_name", name)
    flat.set(f"{path}/target:0/target_proposed_date", due.date().isoformat())


def add_allergy(flat: FlatComposition, when: datetime, allergy: tuple) -> None:
    """An adverse reaction risk known at diagnosis, with the reaction it was found by."""
    substance, category, mechanism, manifestation, severity = allergy
    path = flat.entry("adverse_reaction_risk")
    flat.set(f"{path}/substance", substance)
    flat.local(f"{path}/active_inactive_status", "at0131", "Active")
    flat.local(f"{path}/verification_status", "at0065", "Confirmed")
    flat.local(f"{path}/criticality", *(("at0103", "High") if severity[0] == "at0013" else ("at0102", "Low")))
    flat.local(f"{path}/category", *category)
    flat.local(f"{path}/reaction_mechanism", *mechanism)
    event = f"{path}/adverse_reaction_event:0"
    flat.set(f"{event}/specific_substance", substance)
    flat.set(f"{event}/manifestation:0", manifestation)
    flat.local(f"{event}/severity_of_reaction", *severity)
    flat.set(f"{path}/last_updated", iso(when))


def add_dose_given(flat: FlatComposition, when: datetime, agent: cat.Agent, indication: str) -> None:
    """ACTION.medication.v1 at careflow step 'Dose administered' (state active: the course goes on)."""
    path = flat.entry("medication_management")
    flat.set(f"{path}/time", iso(when))
    flat.set(f"{path}/ism_transition/current_state", code="245", value="active", terminology="openehr")
    flat.local(f"{path}/ism_transition/careflow_step", "at0006", "Dose administered")
    flat.set(f"{path}/medication_item", agent.item.value)
    flat.set(f"{path}/clinical_indication", f"{indication}, {agent.intent}")


def _fmt(number: float) -> str:
    return f"{number:g}"


def _every(period: str) -> str:
    return {"P1D": "once daily", "P12H": "twice daily", "P7D": "weekly", "P14D": "every 2 weeks",
            "P21D": "every 3 weeks", "P3M": "every 3 months"}.get(period, f"every {period}")


# --- single events for the trickle ----------------------------------------------------------
def vital_signs_composition(rng: random.Random, when: datetime, *, facility: str = "Synthetic Oncology Centre",
                            events: int = 1) -> dict[str, Any]:
    """A vitals-only composition (``events`` readings 15 minutes apart)."""
    flat = FlatComposition(when, facility=facility, composer="Synthetic oncology nurse")
    base = _baseline_vitals(rng)
    for k in range(events):
        add_vitals(flat, rng, when + timedelta(minutes=15 * k), base)
    return flat.build()


def lab_composition(rng: random.Random, when: datetime, *, facility: str = "Synthetic Oncology Centre",
                    cancer: str | None = None) -> dict[str, Any]:
    """Haemoglobin, neutrophils and, for a known cancer, its tumour marker."""
    flat = FlatComposition(when, facility=facility, composer="Synthetic laboratory service")
    add_lab(flat, when, cat.HAEMOGLOBIN, round(rng.uniform(9.5, 15.0), 1))
    add_lab(flat, when, cat.NEUTROPHILS, round(rng.uniform(0.9, 6.5), 1))
    if cancer:
        marker = cat.CANCERS[cancer].marker
        add_lab(flat, when, marker, _rounded(rng.uniform(marker.normal[0], marker.raised[1] / 2), marker.decimals))
    return flat.build()


def trickle_composition(rng: random.Random, when: datetime, *, facility: str = "Synthetic Oncology Centre"
                        ) -> tuple[str, dict[str, Any]]:
    """A random small clinical event: (kind, flat). Mostly vitals, some labs."""
    if rng.random() < 0.7:
        return "vitals", vital_signs_composition(rng, when, facility=facility, events=rng.choice([1, 1, 2, 3]))
    return "lab", lab_composition(rng, when, facility=facility)
