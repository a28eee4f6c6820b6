"""Hooks (``mappingCode``) of the pathology rows: clusters of a pathology report (OBSERVATION.laboratory_test_result.v1,
its 'Test result' slot) <-> Observations in the report's DiagnosticReport.result: gleasonScore, lymphNodeCounts,
figoStage, tumourInvasion, resectionMargin (each described above its code below).

``gleasonScore`` (CLUSTER.gleason_score.v0 <-> one Observation 'Gleason score' LOINC 35266-6, category
laboratory): total Gleason score at0197 (DV_COUNT 2..10) <-> valueInteger; the primary, secondary and tertiary
Gleason grade (at0166 / at0182 / at0183, DV_ORDINAL 1..5) <-> components LOINC 44641-9 / 44642-7 / 44643-5
'Gleason pattern.primary/secondary/tertiary in Prostate tumor', valueInteger = the ordinal; the Gleason Grade
Group at0265 (DV_ORDINAL 1..5) <-> component 94734-1 'Prostate cancer grade group [Score] in Prostate tumor
Qualitative', valueCodeableConcept = the LOINC answer of its list LL5543-5 (LA30794-4 .. LA30798-5, ISUP Grade
Group 1..5).  Codes as the MII pathology / onkology modules and the HL7 Europe FLUTE guide use them; mCODE STU4
has no Gleason profile, so none is declared.  Back, each component gives its element (the archetype's at-code
and rubric for the ordinal); a pattern outside 1..5, a total outside 2..10 or an unknown grade-group answer has
no place in the archetype: nothing is written for it, so from_fhir reports it lost.
"""
from __future__ import annotations

from . import datatypes as dt
from . import terminology
from .runtime import FWD

LOINC = "http://loinc.org"
TOTAL = ("at0197", "Total Gleason score")
PATTERNS = {  # component code -> (element node, name, at-code of ordinal 1..5)
    "44641-9": ("at0166", "Primary Gleason grade", ("at0250", "at0251", "at0252", "at0253", "at0254")),
    "44642-7": ("at0182", "Secondary Gleason grade", ("at0255", "at0256", "at0257", "at0258", "at0259")),
    "44643-5": ("at0183", "Tertiary Gleason grade", ("at0260", "at0261", "at0262", "at0263", "at0264")),
}
PATTERN_DISPLAY = {"44641-9": "Gleason pattern.primary in Prostate tumor",
                   "44642-7": "Gleason pattern.secondary in Prostate tumor",
                   "44643-5": "Gleason pattern.tertiary in Prostate tumor"}
GRADE_GROUP = "94734-1"
GRADE_GROUP_NODE = ("at0265", "Gleason Grade Group", ("at0266", "at0267", "at0268", "at0269", "at0270"))
GRADE_GROUP_DISPLAY = "Prostate cancer grade group [Score] in Prostate tumor Qualitative"
# LOINC answer list LL5543-5, displays as LOINC publishes them (Grade Group 5's typo included)
GRADE_GROUP_ANSWERS = {1: ("LA30794-4", "ISUP Grade (Grade Group) 1 (Gleason score <=6)"),
                       2: ("LA30795-1", "ISUP Grade (Grade Group) 2 (Gleason score 3+4=7)"),
                       3: ("LA30796-9", "ISUP Grade (Grade Group) 3 (Gleason score 4+3=7)"),
                       4: ("LA30797-7", "ISUP Grade (Grade Group) 4 (Gleason score 8)"),
                       5: ("LA30798-5", "ISUP Grade (Group Group) 5 (Gleason score 9-10)")}


def _child(node: dict, at: str) -> dict | None:
    return next((i for i in node.get("items") or [] if i.get("archetype_node_id") == at), None)


def _ordinal(node: dict | None, codes: tuple[str, ...]) -> int | None:
    """The ordinal 1..5 of a template-valid DV_ORDINAL (its value agreeing with its symbol's at-code)."""
    value = (node or {}).get("value") or {}
    if value.get("_type") != "DV_ORDINAL":
        return None
    code = ((value.get("symbol") or {}).get("defining_code") or {}).get("code_string")
    n = value.get("value")
    return n if isinstance(n, int) and 1 <= n <= 5 and codes[n - 1] == code else None


def _code(concept: dict | None, system: str = LOINC) -> str | None:
    return next((c.get("code") for c in (concept or {}).get("coding") or [] if c.get("system") == system), None)


def _element(node: str, name: str, value: dict) -> dict:
    return {"_type": "ELEMENT", "archetype_node_id": node, "name": {"_type": "DV_TEXT", "value": name}, "value": value}


def _ordinal_value(n: int, code: str, text: str) -> dict:
    return {"_type": "DV_ORDINAL", "value": n, "symbol": {
        "_type": "DV_CODED_TEXT", "value": text,
        "defining_code": {"_type": "CODE_PHRASE", "terminology_id": {"_type": "TERMINOLOGY_ID", "value": "local"},
                          "code_string": code}}}


def gleason_score(ctx, rule, onode, fobj, fmodel, direction):
    if direction == FWD:
        _gleason_forward(onode, ctx.resource)
    else:
        _gleason_back(ctx.resource, onode)


def _gleason_forward(cluster: dict, obs: dict) -> None:
    total = ((_child(cluster, TOTAL[0]) or {}).get("value") or {})
    if total.get("_type") == "DV_COUNT" and isinstance(total.get("magnitude"), int) and 2 <= total["magnitude"] <= 10:
        obs["valueInteger"] = total["magnitude"]
    components = []
    for code, (node, _, codes) in PATTERNS.items():
        n = _ordinal(_child(cluster, node), codes)
        if n is not None:
            components.append({"code": {"coding": [{"system": LOINC, "code": code, "display": PATTERN_DISPLAY[code]}]},
                               "valueInteger": n})
    group = _ordinal(_child(cluster, GRADE_GROUP_NODE[0]), GRADE_GROUP_NODE[2])
    if group is not None:
        answer, display = GRADE_GROUP_ANSWERS[group]
        components.append({"code": {"coding": [{"system": LOINC, "code": GRADE_GROUP, "display": GRADE_GROUP_DISPLAY}]},
                           "valueCodeableConcept": {"coding": [{"system": LOINC, "code": answer, "display": display}]}})
    if components:
        obs["component"] = components


def _gleason_back(obs: dict, cluster: dict) -> None:
    items = []
    for comp in obs.get("component") or []:
        code = _code(comp.get("code"))
        n = comp.get("valueInteger")
        if code in PATTERNS and isinstance(n, int) and 1 <= n <= 5:
            node, name, codes = PATTERNS[code]
            items.append(_element(node, name, _ordinal_value(n, codes[n - 1], f"Grade {n}")))
        elif code == GRADE_GROUP:
            answer = _code(comp.get("valueCodeableConcept"))
            group = next((g for g, (a, _) in GRADE_GROUP_ANSWERS.items() if a == answer), None)
            if group is not None:
                node, name, codes = GRADE_GROUP_NODE
                items.append(_element(node, name, _ordinal_value(group, codes[group - 1], f"Grade Group {group}")))
    total = obs.get("valueInteger")
    if isinstance(total, int) and not isinstance(total, bool) and 2 <= total <= 10:
        items.append(_element(TOTAL[0], TOTAL[1], {"_type": "DV_COUNT", "magnitude": total}))
    if items:
        cluster.setdefault("items", []).extend(items)


# ``lymphNodeCounts`` (CLUSTER.lymph_node_metastases.v0 <-> one Observation 'Number of lymph nodes containing
# metastatic neoplasm in excised specimen', SNOMED CT 443527007): number of nodes with tumour at0002 (DV_COUNT)
# <-> valueInteger; number of nodes examined at0001 (DV_COUNT) <-> component SNOMED CT 444025001 'Number of lymph
# nodes examined'.  SNOMED CT, not LOINC 21893-3 / 21894-1: those count *regional* nodes, and the cluster names
# any lymph node site.  Back, a central Observation coded 21893-3 (regional nodes positive, the MII onkology
# module's code) is read the same way, as is a 21894-1 component (regional nodes are lymph nodes: nothing is
# invented), its original coding kept in the feeder audit.
NODES_POSITIVE = ("443527007", "Number of lymph nodes containing metastatic neoplasm in excised specimen")
NODES_EXAMINED = ("444025001", "Number of lymph nodes examined")
SNOMED = "http://snomed.info/sct"
POSITIVE_EL, EXAMINED_EL = ("at0002", "Number of nodes with tumour"), ("at0001", "Number of nodes examined")
REGIONAL_EXAMINED = "21894-1"


def _count(node: dict | None) -> int | None:
    value = (node or {}).get("value") or {}
    n = value.get("magnitude")
    return n if value.get("_type") == "DV_COUNT" and isinstance(n, int) and not isinstance(n, bool) and n >= 0 else None


def lymph_node_counts(ctx, rule, onode, fobj, fmodel, direction):
    obs = ctx.resource
    if direction == FWD:
        positive, examined = _count(_child(onode, POSITIVE_EL[0])), _count(_child(onode, EXAMINED_EL[0]))
        if positive is not None:
            obs["valueInteger"] = positive
        if examined is not None:
            obs["component"] = [{"code": {"coding": [{"system": SNOMED, "code": NODES_EXAMINED[0],
                                                      "display": NODES_EXAMINED[1]}]},
                                 "valueInteger": examined}]
        return
    items = []
    examined = next((c.get("valueInteger") for c in obs.get("component") or []
                     if _code(c.get("code"), SNOMED) == NODES_EXAMINED[0] or _code(c.get("code")) == REGIONAL_EXAMINED),
                    None)
    if isinstance(examined, int) and not isinstance(examined, bool) and examined >= 0:
        items.append(_element(EXAMINED_EL[0], EXAMINED_EL[1], {"_type": "DV_COUNT", "magnitude": examined}))
    positive = obs.get("valueInteger")
    if isinstance(positive, int) and not isinstance(positive, bool) and positive >= 0:
        items.append(_element(POSITIVE_EL[0], POSITIVE_EL[1], {"_type": "DV_COUNT", "magnitude": positive}))
    if items:
        onode.setdefault("items", []).extend(items)


# ``figoStage`` (CLUSTER.figo_staging_cancer.v1 <-> one mCODE STU4 cancer stage Observation, SNOMED CT 385361009
# 'International Federation of Gynecology and Obstetrics stage for gynecological malignancy'), as mCODE's own
# example figo-stage-IIIA: FIGO stage at0002 (DV_TEXT, e.g. 'IIIA') <-> valueCodeableConcept, the text as written
# plus the NCI Thesaurus coding of mcode-figo-stage-value-vs whose display is 'FIGO Stage <the stage>' (no coding
# when the text names no stage of that list); staging criteria at0005 <-> method, the text as written plus the
# SNOMED CT FIGO staging system of mcode-cancer-staging-method-vs naming that organ (cervix 106250008, endometrium
# 106244003, vagina 254384000, vulva 106245002; gestational trophoblastic neoplasia NCIt C99408), for uterine
# sarcoma, ovary / tube / peritoneum and free text the general FIGO system 254383006 (no narrower code of the set
# names exactly those criteria).  Back, the text wins; without one a listed code gives its element.
NCIT = "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl"
FIGO_STAGE_CODE = ("385361009", "International Federation of Gynecology and Obstetrics stage for gynecological "
                   "malignancy (observable entity)")
# mcode-figo-stage-value-vs (mCODE STU4 4.0.0), code -> the stage its display names after 'FIGO Stage '
FIGO_STAGES = {
    "C96243": "0", "C96244": "I", "C96245": "IA", "C96246": "IA1", "C96247": "IA2", "C96248": "IB", "C96249": "IB1",
    "C96250": "IB2", "C162222": "IB3", "C96251": "IC", "C128099": "IC1", "C128100": "IC2", "C128101": "IC3",
    "C96252": "II", "C96253": "IIA", "C162223": "IIA1", "C128103": "IIA1(i)", "C128104": "IIA1(ii)",
    "C162224": "IIA2", "C96254": "IIB", "C188300": "IIC1", "C96255": "III", "C96256": "IIIA", "C128102": "IIIA1",
    "C128105": "IIIA2", "C96257": "IIIB", "C96258": "IIIC", "C96259": "IIIC1", "C96260": "IIIC2", "C96261": "IV",
    "C96262": "IVA", "C96263": "IVB"}
FIGO_GENERAL = (SNOMED, "254383006", "International Federation of Gynecology and Obstetrics staging system of "
                "gynecological malignancy (tumor staging)")
# staging criteria at-code -> (rubric, method coding); mcode-cancer-staging-method-vs (mCODE STU4 4.0.0)
FIGO_CRITERIA = {
    "at0007": ("Cervix uteri", (SNOMED, "106250008", "International Federation of Gynecology and Obstetrics staging "
                                "system for cervical carcinoma (tumor staging)")),
    "at0008": ("Corpus uteri (endometrium)", (SNOMED, "106244003", "International Federation of Gynecology and "
                                              "Obstetrics staging system for endometrial carcinoma (tumor staging)")),
    "at0009": ("Uterine sarcoma", FIGO_GENERAL),
    "at0010": ("Ovary, fallopian tube, and peritoneum", FIGO_GENERAL),
    "at0011": ("Vagina", (SNOMED, "254384000", "International Federation of Gynecology and Obstetrics vaginal tumor "
                          "staging system (tumor staging)")),
    "at0012": ("Vulva", (SNOMED, "106245002", "International Federation of Gynecology and Obstetrics staging system "
                         "for vulvar carcinoma (tumor staging)")),
    "at0013": ("Gestational trophoblastic neoplasia", (NCIT, "C99408", "FIGO Staging System and Modified World Health "
                                                       "Organization [WHO] Prognostic Scoring System for Gestational "
                                                       "Trophoblastic Neoplasms")),
}
# back: a method code naming one criteria set (the two ovarian systems are the ovary / tube / peritoneum criteria's)
FIGO_CRITERIA_BY_CODE = {"106250008": "at0007", "106244003": "at0008", "254384000": "at0011", "106245002": "at0012",
                         "C99408": "at0013", "254386003": "at0010", "106247005": "at0010"}
STAGE_EL, CRITERIA_EL = ("at0002", "FIGO stage"), ("at0005", "Staging criteria")


def _figo_key(stage: str) -> str:
    s = "".join(stage.split()).upper()
    for prefix in ("FIGO", "STAGE"):
        s = s[len(prefix):] if s.startswith(prefix) else s
    return s


FIGO_BY_STAGE = {_figo_key(v): k for k, v in FIGO_STAGES.items()}


def figo_stage(ctx, rule, onode, fobj, fmodel, direction):
    obs = ctx.resource
    if direction == FWD:
        stage = ((_child(onode, STAGE_EL[0]) or {}).get("value") or {}).get("value")
        if isinstance(stage, str) and stage.strip():
            value = {"text": stage}
            code = FIGO_BY_STAGE.get(_figo_key(stage))
            if code:
                value["coding"] = [{"system": NCIT, "code": code, "display": f"FIGO Stage {FIGO_STAGES[code]}"}]
            obs["valueCodeableConcept"] = value
        criteria = (_child(onode, CRITERIA_EL[0]) or {}).get("value") or {}
        if isinstance(criteria.get("value"), str) and criteria["value"].strip():
            at = ((criteria.get("defining_code") or {}).get("code_string")
                  if criteria.get("_type") == "DV_CODED_TEXT" else None)
            system, code, display = FIGO_CRITERIA[at][1] if at in FIGO_CRITERIA else FIGO_GENERAL
            obs["method"] = {"coding": [{"system": system, "code": code, "display": display}],
                             "text": criteria["value"]}
        return
    items = []
    method = obs.get("method") or {}
    codes = [c.get("code") for c in method.get("coding") or [] if c.get("system") in (SNOMED, NCIT)]
    at = next((FIGO_CRITERIA_BY_CODE[c] for c in codes if c in FIGO_CRITERIA_BY_CODE), None)
    text = method.get("text")
    if isinstance(text, str) and text.strip():
        by_rubric = next((a for a, (rubric, _) in FIGO_CRITERIA.items() if rubric == text), None)
        value = (_coded(by_rubric, text) if by_rubric and (at in (None, by_rubric))
                 else {"_type": "DV_TEXT", "value": text})
    elif at:
        value = _coded(at, FIGO_CRITERIA[at][0])
    else:
        value = None
    if value:
        items.append(_element(CRITERIA_EL[0], CRITERIA_EL[1], value))
    concept = obs.get("valueCodeableConcept") or {}
    stage = concept.get("text")
    if not (isinstance(stage, str) and stage.strip()):
        stage = next((FIGO_STAGES[c.get("code")] for c in concept.get("coding") or []
                      if c.get("system") == NCIT and c.get("code") in FIGO_STAGES), None)
    if stage:
        items.append(_element(STAGE_EL[0], STAGE_EL[1], {"_type": "DV_TEXT", "value": stage}))
    if items:
        onode.setdefault("items", []).extend(items)


def _coded(at: str, text: str) -> dict:
    return {"_type": "DV_CODED_TEXT", "value": text, "defining_code": {
        "_type": "CODE_PHRASE", "terminology_id": {"_type": "TERMINOLOGY_ID", "value": "local"}, "code_string": at}}


# ``tumourInvasion`` (CLUSTER.tumour_invasion.v0 <-> one Observation 'Status of invasion by tumor', SNOMED CT
# 370052007, as mCODE's example us-core-observation-lab-tumor-invasion-jenny-m; no LOINC exists for it): direct
# invasion at0003 <-> valueCodeableConcept, the rubric as text plus the SNOMED CT qualifier where one says the
# same (Present 52101004, Absent 2667000, Indeterminate 82334004, as the Chilean R2BO pathology guide's invasion
# value set; 'Present - focal' and 'Present - diffuse/extensive' are Present too and carry it, their text says
# how); 'Suspicious' has no code that means it: text alone.  Back, the text names the at-code when it is a rubric,
# else the code (mCODE's own 'Negative' 260385009 reads as Absent); anything else writes nothing.
INVASION = ("370052007", "Status of invasion by tumor")
INVASION_EL = ("at0003", "Direct invasion")
PRESENT, ABSENT, INDETERMINATE = ((SNOMED, "52101004", "Present"), (SNOMED, "2667000", "Absent"),
                                  (SNOMED, "82334004", "Indeterminate"))
INVASION_VALUES = {"at0004": ("Present", PRESENT), "at0013": ("Present - focal", PRESENT),
                   "at0014": ("Present - diffuse/extensive", PRESENT), "at0015": ("Suspicious", None),
                   "at0005": ("Absent", ABSENT), "at0006": ("Indeterminate", INDETERMINATE)}
INVASION_BY_CODE = {"52101004": "at0004", "2667000": "at0005", "260385009": "at0005", "82334004": "at0006"}


def tumour_invasion(ctx, rule, onode, fobj, fmodel, direction):
    obs = ctx.resource
    if direction == FWD:
        value = (_child(onode, INVASION_EL[0]) or {}).get("value") or {}
        at = (value.get("defining_code") or {}).get("code_string") if value.get("_type") == "DV_CODED_TEXT" else None
        if at in INVASION_VALUES:
            rubric, coding = INVASION_VALUES[at]
            concept = {"text": value.get("value") or rubric}
            if coding:
                concept["coding"] = [{"system": coding[0], "code": coding[1], "display": coding[2]}]
            obs["valueCodeableConcept"] = concept
        return
    concept = obs.get("valueCodeableConcept") or {}
    text = concept.get("text")
    at = next((a for a, (rubric, _) in INVASION_VALUES.items() if rubric == text), None)
    if at is None:
        at = next((INVASION_BY_CODE[c.get("code")] for c in concept.get("coding") or []
                   if c.get("system") == SNOMED and c.get("code") in INVASION_BY_CODE), None)
    if at:
        onode.setdefault("items", []).append(
            _element(INVASION_EL[0], INVASION_EL[1], _coded(at, INVASION_VALUES[at][0])))


# ``resectionMargin`` (CLUSTER.tumour_resection_margins.v0 <-> one Observation 'Surgical margin observable', SNOMED
# CT 396631001, in the shape of the Chilean R2BO pathology guide's margin Observation): marginal involvement at0001
# <-> component SNOMED CT 396324006 'Surgical margin involved by neoplasm in excised tissue specimen', its value the
# rubric as text plus the code of R2BO's margin value set that says the same (Present: Involved 248448006, Absent:
# Negative 260385009); Equivocal and Indeterminate have no code there: text alone.  Back, a rubric text names its
# at-code, else the code (R2BO's Positive 10828004 reads as Present); anything else writes nothing.
MARGIN = ("396631001", "Surgical margin observable")
MARGIN_INVOLVED = ("396324006", "Surgical margin involved by neoplasm in excised tissue specimen")
MARGIN_EL = ("at0001", "Marginal involvement")
MARGIN_VALUES = {"at0014": ("Present", (SNOMED, "248448006", "Involved")),
                 "at0015": ("Absent", (SNOMED, "260385009", "Negative")),
                 "at0017": ("Equivocal", None), "at0016": ("Indeterminate", None)}
MARGIN_BY_CODE = {"248448006": "at0014", "10828004": "at0014", "260385009": "at0015"}


def resection_margin(ctx, rule, onode, fobj, fmodel, direction):
    obs = ctx.resource
    if direction == FWD:
        value = (_child(onode, MARGIN_EL[0]) or {}).get("value") or {}
        at = (value.get("defining_code") or {}).get("code_string") if value.get("_type") == "DV_CODED_TEXT" else None
        if at in MARGIN_VALUES:
            rubric, coding = MARGIN_VALUES[at]
            concept = {"text": value.get("value") or rubric}
            if coding:
                concept["coding"] = [{"system": coding[0], "code": coding[1], "display": coding[2]}]
            obs["component"] = [{"code": {"coding": [{"system": SNOMED, "code": MARGIN_INVOLVED[0],
                                                      "display": MARGIN_INVOLVED[1]}]},
                                 "valueCodeableConcept": concept}]
        return
    concept = next((c.get("valueCodeableConcept") or {} for c in obs.get("component") or []
                    if _code(c.get("code"), SNOMED) == MARGIN_INVOLVED[0]), {})
    text = concept.get("text")
    at = next((a for a, (rubric, _) in MARGIN_VALUES.items() if rubric == text), None)
    if at is None:
        at = next((MARGIN_BY_CODE[c.get("code")] for c in concept.get("coding") or []
                   if c.get("system") == SNOMED and c.get("code") in MARGIN_BY_CODE), None)
    if at:
        onode.setdefault("items", []).append(_element(MARGIN_EL[0], MARGIN_EL[1], _coded(at, MARGIN_VALUES[at][0])))


# ``pathologyExam`` (CLUSTER.anatomical_pathology_exam.v0 <-> one narrative Observation per examination): the CKM
# archetype records an examination in free text, so it is carried as the pathology report's narrative sections are
# in FHIR: the examination type names the Observation (Macroscopic at0020 <-> LOINC 22634-0 'Pathology report gross
# observation', Microscopic at0021 <-> 22635-7 'Pathology report microscopic observation', the section codes the
# MII pathology module and the R2BO guide use); the examination description at0011 <-> valueString; each finding
# at0005 <-> a component whose code is the finding label at0023 as text (no code is invented for it) and whose
# valueString is the finding description at0008.  An examination without a coded type (text, or none) is not made:
# nothing says which section it is, and the whole cluster stays in the report's residue, as every part of it that is
# not named here does (interpretation, structured findings slot, multimedia, container ids, tissue available).  No
# histologic type, grade or BodyStructure is read out of the text.
EXAM_TYPE = ("at0019", "Examination type")
EXAM_CODES = {"at0020": ("22634-0", "Pathology report gross observation", "Macroscopic examination"),
              "at0021": ("22635-7", "Pathology report microscopic observation", "Microscopic examination")}
EXAM_BY_CODE = {code: at for at, (code, _, _) in EXAM_CODES.items()}
EXAM_DESCRIPTION = ("at0011", "Examination description")
FINDING = ("at0005", "Anatomical pathology finding")
FINDING_LABEL = ("at0023", "Finding label")
FINDING_DESCRIPTION = ("at0008", "Finding description")
FINDING_INTERPRETATION = ("at0010", "Pathology interpretation")
# ``pathologyExam`` also reads the one structured finding FHIR has a row for: the histologic type and behaviour,
# an ICD-O-3 morphology code (MII's histology Observation, LOINC 59847-4 'Histology and Behavior ICD-O-3 Cancer').
# Its home is a microscopic examination (histology is the microscopic study of tissue) whose one finding has it as
# its coded 'Pathology interpretation' (the CKM: "a coded term is preferred").  Only that exact shape is that
# Observation; an interpretation beside narrative findings stays in the residue, as before.
HISTOLOGY = "59847-4"
ICD_O_3 = "ICD-O-3"


def _exam_type(onode: dict) -> str | None:
    """The at-code of an examination's coded type (at0020 / at0021), else None (the lab file's slot rule makes
    only coded ones; this keeps the hook from writing a code for anything else)."""
    value = (_child(onode, EXAM_TYPE[0]) or {}).get("value") or {}
    at = (value.get("defining_code") or {}).get("code_string") if value.get("_type") == "DV_CODED_TEXT" else None
    return at if at in EXAM_CODES else None


def pathology_exam(ctx, rule, onode, fobj, fmodel, direction):
    obs = ctx.resource
    if direction == FWD:
        at = _exam_type(onode)
        if at is None:
            return
        histology = _histology(onode) if at == "at0021" else None
        if histology is not None:
            obs["code"] = {"coding": [{"system": LOINC, "code": HISTOLOGY}]}
            obs["valueCodeableConcept"] = dt.coded_to_fhir(histology)
            return
        code, display, _ = EXAM_CODES[at]
        obs["code"] = {"coding": [{"system": LOINC, "code": code, "display": display}]}
        described = (_child(onode, EXAM_DESCRIPTION[0]) or {}).get("value") or {}
        if described.get("value"):
            obs["valueString"] = described["value"]
        components = [_finding_component(f) for f in onode.get("items") or []
                      if f.get("archetype_node_id") == FINDING[0]]
        if any(components):
            obs["component"] = [c for c in components if c]
        return
    if _code(obs.get("code")) == HISTOLOGY:
        _histology_back(obs, onode)
        return
    at = EXAM_BY_CODE.get(_code(obs.get("code")) or "")
    if at is None:
        return
    items = onode.setdefault("items", [])
    items.append(_element(EXAM_TYPE[0], EXAM_TYPE[1], _coded(at, EXAM_CODES[at][2])))
    for component in obs.get("component") or []:
        finding = _finding_cluster(component)
        if finding:
            items.append(finding)
    if obs.get("valueString"):
        items.append(_element(EXAM_DESCRIPTION[0], EXAM_DESCRIPTION[1], {"_type": "DV_TEXT", "value": obs["valueString"]}))


def _finding_component(finding: dict) -> dict | None:
    label = ((_child(finding, FINDING_LABEL[0]) or {}).get("value") or {}).get("value")
    description = ((_child(finding, FINDING_DESCRIPTION[0]) or {}).get("value") or {}).get("value")
    if not (label and description):  # a component needs a code (the label) to say what its value is
        return None
    return {"code": {"text": label}, "valueString": description}


def _finding_cluster(component: dict) -> dict | None:
    label, description = (component.get("code") or {}).get("text"), component.get("valueString")
    if (component.get("code") or {}).get("coding") or not (label and description):
        return None  # a coded component is no free-text finding of this archetype
    return {"_type": "CLUSTER", "archetype_node_id": FINDING[0], "name": {"_type": "DV_TEXT", "value": FINDING[1]},
            "items": [_element(FINDING_LABEL[0], FINDING_LABEL[1], {"_type": "DV_TEXT", "value": label}),
                      _element(FINDING_DESCRIPTION[0], FINDING_DESCRIPTION[1], {"_type": "DV_TEXT", "value": description})]}


def _histology(onode: dict) -> dict | None:
    """The ICD-O-3 interpretation of an examination that holds nothing else: its type and one finding whose one
    element is that interpretation; else None (the examination is a narrative Observation)."""
    rest = [i for i in onode.get("items") or [] if i.get("archetype_node_id") != EXAM_TYPE[0]]
    if len(rest) != 1 or rest[0].get("archetype_node_id") != FINDING[0]:
        return None
    elements = rest[0].get("items") or []
    value = (elements[0].get("value") or {}) if len(elements) == 1 else {}
    if elements and elements[0].get("archetype_node_id") == FINDING_INTERPRETATION[0] \
            and value.get("_type") == "DV_CODED_TEXT" \
            and ((value.get("defining_code") or {}).get("terminology_id") or {}).get("value") == ICD_O_3:
        return value
    return None


def _histology_back(obs: dict, onode: dict) -> None:
    """A histology Observation -> a microscopic examination with its ICD-O-3 code as the finding's interpretation.
    A value in another code system (or none) has no row here: nothing is written, so from_fhir reports it."""
    concept = obs.get("valueCodeableConcept") or {}
    if not any(c.get("system") == terminology.system_for(ICD_O_3) for c in concept.get("coding") or []):
        return
    interpretation = dt.cc_to_dv(concept)
    onode.setdefault("items", []).extend([
        _element(EXAM_TYPE[0], EXAM_TYPE[1], _coded("at0021", EXAM_CODES["at0021"][2])),
        {"_type": "CLUSTER", "archetype_node_id": FINDING[0], "name": {"_type": "DV_TEXT", "value": FINDING[1]},
         "items": [_element(FINDING_INTERPRETATION[0], FINDING_INTERPRETATION[1], interpretation)]}])
