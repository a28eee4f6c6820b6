"""Clinical tables the synthetic generator draws from: five cancers, their codes, markers,
agents, procedures and TNM stage grouping (UICC 8th edition, anatomic groups, simplified).

Codes are real public codes (SNOMED CT, ICD-10, LOINC, RxNorm ingredient level) picked for
plausibility in a demo; they are not checked against a terminology server. Everything a patient
gets is drawn from here, so nothing in this module describes a person.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    code: str
    value: str
    terminology: str


def snomed(code: str, value: str) -> Code:
    return Code(code, value, "SNOMED-CT")


@dataclass(frozen=True)
class Marker:
    """A lab analyte: LOINC code, unit, normal range and the range a sick patient shows."""

    test_name: str
    loinc: Code
    unit: str
    normal: tuple[float, float]
    raised: tuple[float, float]
    decimals: int = 1


@dataclass(frozen=True)
class Agent:
    """An anticancer medication order pattern (dose per administration, route, cycle)."""

    item: Code
    route: Code
    dose: float
    dose_unit: str
    period: str  # ISO 8601 duration between administrations
    repeats: int | None  # None: open-ended (R/...)
    duration: str  # direction duration, ISO 8601
    intent: str
    form: str  # what one administration is, for the directions text
    needs: str | None = None  # text the histology must contain (hormone therapy needs receptors)


ORAL = snomed("26643006", "Oral route")
IV = snomed("47625008", "Intravenous route")
SUBCUT = snomed("34206005", "Subcutaneous route")


def rxnorm(code: str, value: str) -> Code:
    return Code(code, value, "RxNorm")


def loinc(code: str, value: str) -> Code:
    return Code(code, value, "LOINC")


HAEMOGLOBIN = Marker("Haemoglobin", loinc("718-7", "Hemoglobin [Mass/volume] in Blood"), "g/dL",
                     normal=(11.8, 15.5), raised=(9.0, 11.5))
NEUTROPHILS = Marker("Neutrophils", loinc("751-8", "Neutrophils [#/volume] in Blood by Automated count"),
                     "10*3/uL", normal=(2.0, 7.0), raised=(0.6, 1.9))
CA_15_3 = Marker("CA 15-3", loinc("6875-9", "Cancer Ag 15-3 [Units/volume] in Serum or Plasma"), "U/mL",
                 normal=(8.0, 30.0), raised=(32.0, 160.0), decimals=0)
CEA = Marker("CEA", loinc("2039-6", "Carcinoembryonic Ag [Mass/volume] in Serum or Plasma"), "ng/mL",
             normal=(0.5, 3.0), raised=(5.5, 80.0))
CA_125 = Marker("CA-125", loinc("10334-1", "Cancer Ag 125 [Units/volume] in Serum or Plasma"), "U/mL",
                normal=(5.0, 35.0), raised=(60.0, 900.0), decimals=0)
PSA = Marker("PSA", loinc("2857-1", "Prostate specific Ag [Mass/volume] in Serum or Plasma"), "ng/mL",
             normal=(0.1, 3.5), raised=(4.5, 45.0))


@dataclass(frozen=True)
class Site:
    """Where the tumour is: body site, ICD-10 code and the words used for it."""

    body_site: Code
    icd10: str
    description: str


@dataclass(frozen=True)
class Cancer:
    key: str
    diagnosis: Code
    anatomical_site: str  # TNM cluster "anatomical site"
    sites: tuple[Site, ...]
    histology: tuple[str, ...]
    marker: Marker
    biopsy: Code
    resection: Code
    agents: tuple[Agent, ...]
    t_choices: tuple[tuple[str, int], ...]  # (T category, weight)
    n_choices: tuple[tuple[str, int], ...]
    risk: str  # the health risk assessed
    sexes: frozenset[str] = frozenset({"female", "male"})  # who can have it (a registered person's sex picks among these)


CANCERS: dict[str, Cancer] = {
    "breast": Cancer(
        key="breast",
        diagnosis=snomed("254837009", "Malignant neoplasm of breast"),
        anatomical_site="Breast",
        sites=(
            Site(snomed("80248007", "Left breast structure"), "C50.4", "upper outer quadrant of left breast"),
            Site(snomed("73056007", "Right breast structure"), "C50.4", "upper outer quadrant of right breast"),
            Site(snomed("80248007", "Left breast structure"), "C50.2", "upper inner quadrant of left breast"),
            Site(snomed("73056007", "Right breast structure"), "C50.9", "right breast"),
        ),
        histology=("Invasive ductal carcinoma, ER positive, PR positive, HER2 negative",
                   "Invasive lobular carcinoma, ER positive, HER2 negative",
                   "Invasive ductal carcinoma, triple negative"),
        marker=CA_15_3,
        biopsy=snomed("122548005", "Biopsy of breast"),
        resection=snomed("392021009", "Lumpectomy of breast"),
        agents=(
            Agent(rxnorm("10324", "tamoxifen"), ORAL, 20, "mg", "P1D", None, "P5Y", "adjuvant", "tablet",
                  needs="ER positive"),
            Agent(rxnorm("72965", "letrozole"), ORAL, 2.5, "mg", "P1D", None, "P5Y", "adjuvant", "tablet",
                  needs="ER positive"),
            Agent(rxnorm("56946", "paclitaxel"), IV, 80, "mg/m2", "P7D", 12, "P12W", "adjuvant", "infusion"),
            Agent(rxnorm("3639", "doxorubicin"), IV, 60, "mg/m2", "P21D", 4, "P12W", "neoadjuvant", "infusion"),
        ),
        t_choices=(("T1", 4), ("T2", 4), ("T3", 2), ("T4", 1)),
        n_choices=(("N0", 5), ("N1", 3), ("N2", 1)),
        risk="Recurrence of breast cancer",
    ),
    "colorectal": Cancer(
        key="colorectal",
        diagnosis=snomed("363406005", "Malignant neoplasm of colon"),
        anatomical_site="Colon",
        sites=(
            Site(snomed("60184004", "Sigmoid colon structure"), "C18.7", "sigmoid colon"),
            Site(snomed("9040008", "Ascending colon structure"), "C18.2", "ascending colon"),
            Site(snomed("32713005", "Cecum structure"), "C18.0", "caecum"),
        ),
        histology=("Adenocarcinoma, moderately differentiated, MSS",
                   "Adenocarcinoma, poorly differentiated, MSI-high",
                   "Mucinous adenocarcinoma"),
        marker=CEA,
        biopsy=snomed("73761001", "Colonoscopy"),
        resection=snomed("23968004", "Colectomy"),
        agents=(
            Agent(rxnorm("32592", "oxaliplatin"), IV, 85, "mg/m2", "P14D", 12, "P24W", "adjuvant", "infusion"),
            Agent(rxnorm("194000", "capecitabine"), ORAL, 1000, "mg/m2", "P12H", 112, "P24W", "adjuvant", "tablet"),
            Agent(rxnorm("4492", "fluorouracil"), IV, 400, "mg/m2", "P14D", 12, "P24W", "adjuvant", "bolus"),
        ),
        t_choices=(("T1", 1), ("T2", 3), ("T3", 5), ("T4a", 2)),
        n_choices=(("N0", 5), ("N1", 3), ("N2", 1)),
        risk="Recurrence of colorectal cancer",
    ),
    "lung": Cancer(
        key="lung",
        diagnosis=snomed("254637007", "Non-small cell lung cancer"),
        anatomical_site="Lung",
        sites=(
            Site(snomed("45653009", "Structure of upper lobe of right lung"), "C34.1", "right upper lobe"),
            Site(snomed("44714003", "Structure of upper lobe of left lung"), "C34.1", "left upper lobe"),
            Site(snomed("266005", "Structure of lower lobe of right lung"), "C34.3", "right lower lobe"),
        ),
        histology=("Adenocarcinoma, EGFR wild type, PD-L1 TPS 60%",
                   "Squamous cell carcinoma, PD-L1 TPS 10%",
                   "Adenocarcinoma, EGFR exon 19 deletion"),
        marker=CEA,
        biopsy=snomed("10847001", "Bronchoscopy"),
        resection=snomed("173171007", "Lobectomy of lung"),
        agents=(
            Agent(rxnorm("2555", "cisplatin"), IV, 75, "mg/m2", "P21D", 4, "P12W", "adjuvant", "infusion"),
            Agent(rxnorm("1547545", "pembrolizumab"), IV, 200, "mg", "P21D", 17, "P1Y", "adjuvant", "infusion"),
            Agent(rxnorm("1721560", "osimertinib"), ORAL, 80, "mg", "P1D", None, "P3Y", "adjuvant", "tablet",
                  needs="EGFR exon"),
        ),
        t_choices=(("T1b", 2), ("T1c", 3), ("T2a", 3), ("T2b", 2), ("T3", 1)),
        n_choices=(("N0", 6), ("N1", 2), ("N2", 1)),
        risk="Recurrence of lung cancer",
    ),
    "prostate": Cancer(
        key="prostate",
        diagnosis=snomed("399068003", "Malignant tumor of prostate"),
        anatomical_site="Prostate",
        sites=(Site(snomed("41216001", "Prostatic structure"), "C61", "prostate"),),
        histology=("Acinar adenocarcinoma, Gleason 3+4=7 (Grade Group 2)",
                   "Acinar adenocarcinoma, Gleason 4+3=7 (Grade Group 3)",
                   "Acinar adenocarcinoma, Gleason 3+3=6 (Grade Group 1)"),
        marker=PSA,
        biopsy=snomed("65575008", "Biopsy of prostate"),
        resection=snomed("26294005", "Radical prostatectomy"),
        agents=(
            Agent(rxnorm("42375", "leuprorelin (leuprolide)"), SUBCUT, 22.5, "mg", "P3M", 8, "P2Y", "adjuvant",
                  "depot injection"),
            Agent(rxnorm("83008", "bicalutamide"), ORAL, 50, "mg", "P1D", None, "P2Y", "adjuvant", "tablet"),
            Agent(rxnorm("1307298", "enzalutamide"), ORAL, 160, "mg", "P1D", None, "P2Y", "adjuvant", "capsule"),
        ),
        t_choices=(("T1c", 3), ("T2a", 2), ("T2b", 2), ("T2c", 2), ("T3a", 2)),
        n_choices=(("N0", 8), ("N1", 1)),
        risk="Biochemical recurrence of prostate cancer",
        sexes=frozenset({"male"}),
    ),
    # Epithelial ovarian cancer: diagnosed at laparoscopy, staged surgically (salpingo-oophorectomy), mostly found at
    # stage III; carboplatin (dosed by AUC with the Calvert formula: the order states the computed dose) with
    # paclitaxel every 21 days for six cycles.  Codes: SNOMED CT 363443007 (mCODE's own examples), 20837000 /
    # 43981004 and 116028008 (SNOMED CT concept pages and the SNOMED CT editorial guide's salpingo-oophorectomy
    # example), 73632009 Laparoscopy (SNOMED CT template pages); RxNorm ingredient 40048 carboplatin.
    "ovary": Cancer(
        key="ovary",
        diagnosis=snomed("363443007", "Malignant tumor of ovary"),
        anatomical_site="Ovary",
        sites=(
            Site(snomed("43981004", "Structure of left ovary"), "C56", "left ovary"),
            Site(snomed("20837000", "Structure of right ovary"), "C56", "right ovary"),
        ),
        histology=("High-grade serous carcinoma, BRCA status pending", "Endometrioid carcinoma",
                   "Clear cell carcinoma"),
        marker=CA_125,
        biopsy=snomed("73632009", "Laparoscopy"),
        resection=snomed("116028008", "Salpingo-oophorectomy"),
        agents=(
            Agent(rxnorm("40048", "carboplatin"), IV, 500, "mg", "P21D", 6, "P18W", "adjuvant", "infusion"),
            Agent(rxnorm("56946", "paclitaxel"), IV, 175, "mg/m2", "P21D", 6, "P18W", "adjuvant", "infusion"),
        ),
        t_choices=(("T1a", 1), ("T1c", 2), ("T2b", 1), ("T3b", 1), ("T3c", 4)),
        n_choices=(("N0", 4), ("N1", 1)),
        risk="Recurrence of ovarian cancer",
        sexes=frozenset({"female"}),
    ),
}

MARKERS_FOR = {key: (HAEMOGLOBIN, cancer.marker) for key, cancer in CANCERS.items()}


def _t_rank(t: str) -> int:
    return int(t[1]) if len(t) > 1 and t[1].isdigit() else 0


def stage_group(cancer: str, t: str, n: str, m: str, grade_group: int = 2) -> str:
    """Anatomic stage group from T, N, M (UICC 8th edition, simplified per cancer)."""
    tr, nr, metastatic = _t_rank(t), int(n[1]), m.startswith("M1")
    if cancer == "breast":
        if metastatic:
            return "IV"
        if nr >= 3:
            return "IIIC"
        if tr == 4:
            return "IIIB"
        if nr == 2 or (tr == 3 and nr == 1):
            return "IIIA"
        if (tr == 3 and nr == 0) or (tr == 2 and nr == 1):
            return "IIB"
        if (tr == 2 and nr == 0) or (tr <= 1 and nr == 1):
            return "IIA"
        return "IA"
    if cancer == "colorectal":
        if metastatic:
            return "IVA"
        if nr >= 1:
            if t == "T4b":
                return "IIIC"
            if nr == 2:
                return "IIIC" if tr == 4 else "IIIB"
            return "IIIA" if tr <= 2 else "IIIB"
        return {0: "I", 1: "I", 2: "I", 3: "IIA"}.get(tr, "IIC" if t == "T4b" else "IIB")
    if cancer == "lung":
        if metastatic:
            return "IVA"
        if nr == 3:
            return "IIIC" if tr >= 3 else "IIIB"
        if nr == 2:
            return "IIIB" if tr >= 3 else "IIIA"
        if nr == 1:
            return "IIIA" if tr >= 3 else "IIB"
        return {"T1a": "IA1", "T1b": "IA2", "T1c": "IA3", "T2a": "IB", "T2b": "IIA", "T3": "IIB"}.get(t, "IIIA")
    if cancer == "prostate":
        if metastatic:
            return "IVB"
        if nr >= 1:
            return "IVA"
        if grade_group == 5:
            return "IIIC"
        if tr >= 3:
            return "IIIB"
        if grade_group >= 3:
            return "IIC"
        if grade_group == 2:
            return "IIB"
        return "I" if t in ("T1c", "T2a") else "IIA"
    if cancer == "ovary":  # UICC 8th = FIGO 2014 (ovary, fallopian tube and primary peritoneal carcinoma)
        if metastatic:
            return "IV"
        if t.startswith("T3"):
            return {"T3a": "IIIA2", "T3b": "IIIB", "T3c": "IIIC"}[t]
        if nr >= 1:
            return "IIIA1"
        return {"T1a": "IA", "T1b": "IB", "T1c": "IC", "T2a": "IIA", "T2b": "IIB"}[t]
    raise KeyError(cancer)


def grade_group_of(histology: str) -> int:
    """Prostate Grade Group from the histology text (2 when it names none)."""
    for gg in range(1, 6):
        if f"Grade Group {gg}" in histology:
            return gg
    return 2


# --- performance status (issue 17): the CKM archetypes' ordinals and their English rubrics -----------
# ECOG (OBSERVATION.ecog.v2 at0004) and Karnofsky (OBSERVATION.karnofsky_performance_status_scale.v1
# at0004): score -> (at-code, rubric); the demo draws from the ambulatory end of each scale.
ECOG = {
    0: ("at0005", "Fully active, able to carry on all pre-disease performance without restriction."),
    1: ("at0006", "Restricted in physically strenuous activity but ambulatory and able to carry out work of a "
                  "light or sedentary nature, e.g., light house work, office work."),
    2: ("at0007", "Ambulatory and capable of all selfcare but unable to carry out any work activities; up and "
                  "about more than 50% of waking hours."),
}
KARNOFSKY = {
    100: ("at0015", "Normal; no complaints; no evidence of disease"),
    90: ("at0014", "Able to carry on normal activity; minor signs or symptoms of disease"),
    80: ("at0013", "Normal activity with effort; some signs or symptoms of disease"),
    70: ("at0012", "Cares for self; unable to carry on normal activity or to do active work"),
}
# ECOG and Karnofsky describe the same patient: the usual correspondence (ECOG 0 ~ KPS 90-100, 1 ~ 70-80,
# 2 ~ 50-60) picks a plausible pair.
KARNOFSKY_FOR_ECOG = {0: (100, 90), 1: (80, 70), 2: (70,)}

# The tumour board's plan: goal and radiotherapy referral per intent (curative after resection, palliative
# when metastatic).
PLAN_GOALS = {"curative": "Disease-free at 5 years", "palliative": "Disease control with preserved quality of life"}
# The plan's referral: (service, service type); radiotherapy for all but ovarian cancer, where the board refers the
# patient for germline BRCA1/2 testing (offered to every woman with epithelial ovarian cancer) instead.
RADIATION_ONCOLOGY = "Radiation oncology"
REFERRALS = {"breast": ("Adjuvant whole-breast radiotherapy, 40 Gy in 15 fractions", RADIATION_ONCOLOGY),
             "colorectal": ("Radiotherapy planning review", RADIATION_ONCOLOGY),
             "lung": ("Thoracic radiotherapy planning review", RADIATION_ONCOLOGY),
             "prostate": ("External beam radiotherapy planning review", RADIATION_ONCOLOGY),
             "ovary": ("Genetic counselling and germline BRCA1/BRCA2 testing", "Clinical genetics")}

# The radiotherapy course that follows the breast referral (CLUSTER.radiotherapy.v0 in ACTION.procedure.v1, mapped
# to an mCODE radiotherapy course summary): 40 Gy in 15 fractions of photons, 3D conformal, over 19 days.
RADIOTHERAPY_COURSE = snomed("1217123003", "Radiotherapy course of treatment")
RADIOTHERAPY_COURSES = {"breast": {"method": ("at0048", "Teletherapy"), "radiation": ("at0032", "Photons (ɣ)"),
                                   "technique": "3D conformal radiotherapy", "total_gy": 40.0, "fractions": 15,
                                   "days": 19}}

# Adverse reaction risks a patient may bring (about one in four): substance, category at-code, reaction
# mechanism at-code, a manifestation and the reaction's severity at-code (EVALUATION.adverse_reaction_risk.v2,
# CLUSTER.adverse_reaction_event.v1).
ALLERGIES = (
    ("Penicillin", ("at0122", "Medication"), ("at0059", "Immune mediated"), "Generalised urticaria",
     ("at0012", "Moderate")),
    ("Iodinated contrast media", ("at0122", "Medication"), ("at0059", "Immune mediated"), "Flushing and rash",
     ("at0011", "Mild")),
    ("Peanut", ("at0121", "Food"), ("at0059", "Immune mediated"), "Angioedema", ("at0013", "Severe")),
    ("Codeine", ("at0122", "Medication"), ("at0060", "Non-immune mediated"), "Nausea and vomiting",
     ("at0011", "Mild")),
)

# Toxicities a follow-up may grade after a dose (CLUSTER.ctcae.v1 in the problem_diagnosis the toxicity is,
# mapped to an AdverseEvent): (CTCAE v5.0 system organ class, CTCAE term), as text (no MedDRA code is
# written: the cluster's term is free text), and the grade's ordinal -> at-code of the archetype with the
# chance of each (mostly grade 1-2, as in ambulatory chemotherapy).
TOXICITIES = (("Gastrointestinal disorders", "Nausea"), ("Gastrointestinal disorders", "Diarrhea"),
              ("General disorders and administration site conditions", "Fatigue"),
              ("Nervous system disorders", "Peripheral sensory neuropathy"),
              ("Skin and subcutaneous tissue disorders", "Alopecia"))
CTCAE_GRADES = {1: "at0015", 2: "at0016", 3: "at0017"}
CTCAE_GRADE_WEIGHTS = (6, 3, 1)
CTCAE_VERSION = "5.0"

# The prostate biopsy's pathology report (OBSERVATION.laboratory_test_result.v1 with CLUSTER.gleason_score.v0 in
# its 'Test result' slot): the Gleason score the histology text names ("Gleason 3+4=7 (Grade Group 2)").  At-codes
# and rubrics of the CKM archetype's ordinals, 1..5 in order.
PROSTATE_BIOPSY_REPORT = "Prostate core needle biopsy, histopathology"
GLEASON_CODES = {
    "primary_gleason_grade": tuple((f"at{250 + k:04d}", f"Grade {k + 1}") for k in range(5)),
    "secondary_gleason_grade": tuple((f"at{255 + k:04d}", f"Grade {k + 1}") for k in range(5)),
    "gleason_grade_group": tuple((f"at{266 + k:04d}", f"Grade Group {k + 1}") for k in range(5)),
}


def gleason_of(histology: str) -> dict[str, int] | None:
    """{primary, secondary, total, grade group} of a histology text naming 'Gleason a+b=c (Grade Group g)'."""
    m = re.search(r"Gleason (\d)\+(\d)=(\d+) \(Grade Group (\d)\)", histology)
    if m is None:
        return None
    a, b, total, group = (int(x) for x in m.groups())
    if a + b != total:
        raise ValueError("catalogue histology: Gleason total is not the sum of its patterns")
    return {"primary_gleason_grade": a, "secondary_gleason_grade": b, "total_gleason_score": total,
            "gleason_grade_group": group}

# The resection's pathology report counts the lymph nodes (CLUSTER.lymph_node_metastases.v0) where the N category is
# a count of involved regional nodes (UICC/AJCC 8th: breast pN1 1-3 axillary nodes, pN2 4-9; colon and rectum pN1
# 1-3, pN2 4 or more): the site examined, how many are examined, and the positive count range of each pN.  Lung
# (N by location) and prostate are not counted here.
NODE_COUNTS = {"breast": ("Axillary lymph nodes", (3, 15)), "colorectal": ("Regional (mesenteric) lymph nodes", (12, 25))}
POSITIVE_NODES = {"pN0": (0, 0), "pN1": (1, 3), "pN1a": (1, 3), "pN2": (4, 6)}

# The molecular report a lung adenocarcinoma's histology names (EGFR exon 19 deletion found, or EGFR wild type):
# CLUSTER.genetic_variant_presence.v0 in a laboratory_test_result, finding at-codes of the CKM archetype
# (at0004 Present, at0005 Absent), the variant by name only (no HGVS expression is made up).
MOLECULAR_REPORT = "EGFR mutation analysis, tumour tissue"
EGFR_VARIANT = "EGFR exon 19 deletion"
VARIANT_FINDINGS = {True: ("at0004", "Present"), False: ("at0005", "Absent")}


def egfr_finding_of(histology: str) -> bool | None:
    """Whether the histology text says the EGFR exon 19 deletion was found (None: it says nothing of EGFR)."""
    if EGFR_VARIANT in histology:
        return True
    return False if "EGFR wild type" in histology else None

# The resection's pathology report also states the margins the residual tumour classification rests on
# (CLUSTER.tumour_resection_margins.v0: R0, no tumour at any margin -> Absent; R1, microscopic tumour at a margin ->
# Present) and, for colorectal cancer, whether the tumour directly invades the pericolorectal tissues through the
# muscularis propria (CLUSTER.tumour_invasion.v0: Present from pT3, UICC/AJCC 8th: pT3 and pT4a reach them).
# Ovarian cancer has no margins here: its R says what tumour the debulking left in the abdomen, not at a margin.
MARGIN_NAMES = {"breast": "Lumpectomy margins", "colorectal": "Colectomy margins", "lung": "Lobectomy margins",
                "prostate": "Prostatectomy margins"}
INVASION = {"colorectal": ("Pericolorectal tissues", ("pT3", "pT4a"))}

# Gynaecological cancers are staged by FIGO, surgically: the resection's pathology report carries its
# CLUSTER.figo_staging_cancer.v1 (the staging criteria at-code and rubric of the CKM archetype, the FIGO version
# whose stage table stage_group follows), the stage being the pathological stage group (the same groups for the ovary).
FIGO = {"ovary": ("at0010", "Ovary, fallopian tube, and peritoneum", "2014")}
