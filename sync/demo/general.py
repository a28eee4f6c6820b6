"""Seeded SYNTHETIC general-record compositions (issue 18) for the general template, beside the oncology story.

One canonical composition per patient (``general_composition``) of ``ConflictDesk General Record.v1``
(deploy/templates/build_general_opt.py): body mass index, head circumference, tobacco smoking and alcohol
consumption summaries, a clinical synopsis, an imaging report (with a finding), the episode at the institution,
a vaccination summary, a family history (one relative), a medication use statement named by its medication
details cluster (a Medication in FHIR), and a request for informed consent with the consent then provided.
The shape is the template's own
(``sync.mapping.example``: every node it defines, inside its constraints); the clinical values are drawn by a
``random.Random`` seeded from (seed, subject id) from the small tables below, and the times are moved to the
patient's visit. Nothing describes a real person. ``seed_general`` commits it once (a deterministic uid: a
re-run finds it and commits nothing).
"""
from __future__ import annotations

import random
import re
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from sync.clients.errors import InvalidRequest, NotFound
from sync.clients.openehr import OpenEHRClient, VersionRef
from sync.mapping.example import Ask, example_composition

TEMPLATE_ID = "ConflictDesk General Record.v1"
OPT_PATH = Path(__file__).resolve().parents[2] / "deploy" / "templates" / "conflictdesk_general.v1.opt"
_EXAMPLE_T0 = datetime(2024, 3, 1, 8, 0, tzinfo=timezone(timedelta(hours=1)))  # example.py's first time
_UID_NS = uuid.UUID("5b0c9f4e-18a4-4c1e-9d52-2f6a0e8b7c18")
SYNOPSES = (
    "Synthetic: localised disease, adjuvant treatment completed, on surveillance.",
    "Synthetic: stable disease on maintenance therapy; next imaging in three months.",
    "Synthetic: post-operative recovery uneventful; pathology reviewed at tumour board.",
    "Synthetic: partial response after four cycles; treatment continues as planned.",
)
IMPRESSIONS = (
    "Synthetic: no evidence of metastatic disease.",
    "Synthetic: stable appearances compared with the previous study.",
    "Synthetic: post-treatment changes, no new lesion.",
)
STRUCTURES = (("Liver", "Synthetic: no focal lesion."), ("Lungs", "Synthetic: no pulmonary nodules."),
              ("Bones", "Synthetic: no suspicious bone lesion."))
STUDIES = ("CT chest abdomen pelvis", "MRI breast", "PET-CT whole body", "Chest X-ray")
RELATIVES = ("Mother", "Father", "Sister", "Maternal aunt", "Paternal grandmother")
# what a consent is asked and given for (the request's proposed activity is the consent's activity)
CONSENTED = ("Left mastectomy with sentinel node biopsy", "Adjuvant chemotherapy (4 cycles AC)",
             "Adjuvant whole-breast radiotherapy", "Breast-conserving surgery")
VACCINES = ("Influenza vaccine", "Pneumococcal conjugate vaccine", "COVID-19 mRNA vaccine")
# a medication the patient reports using, named by its details cluster (a Medication)
MEDICATIONS = (("Omeprazole 20 mg", "Capsule"), ("Ramipril 5 mg", "Tablet"), ("Levothyroxine 50 microgram", "Tablet"),
               ("Metformin 500 mg", "Tablet"))
# (archetype, at-code of the value) -> plausible adult range
RANGES = {("body_mass_index", "at0004"): (18.5, 34.9), ("head_circumference", "at0004"): (53.0, 60.0)}
UNITS = {"body_mass_index": "kg/m2", "head_circumference": "cm"}


def general_uid(seed: int, subject_id: str) -> str:
    return str(uuid.uuid5(_UID_NS, f"{seed}|{subject_id}|general"))


def study_uid(seed: int, subject_id: str) -> str:
    """The imaging study's DICOM Study Instance UID: a UUID-derived UID (DICOM PS3.5 B.2, root 2.25), unique
    without an organisation's root, the same for a seed and subject."""
    return f"2.25.{uuid.uuid5(_UID_NS, f'{seed}|{subject_id}|imaging study').int}"


def _archetype(path: str) -> str | None:
    return next((name for name in ("body_mass_index", "head_circumference", "tobacco_smoking_summary",
                                   "alcohol_consumption_summary", "clinical_synopsis", "imaging_exam",
                                   "imaging_exam_result",
                                   "vaccination_summary", "family_history", "medication", "medication_statement",
                                   "informed_consent", "informed_consent_request")
                 if f".{name}." in path), None)


def _chooser(rng: random.Random, visit: datetime):
    shift = visit - _EXAMPLE_T0
    structure = rng.choice(STRUCTURES)  # the imaging finding's body structure and what was seen there
    medication = rng.choice(MEDICATIONS)  # the statement's medication: name and form
    consented = rng.choice(CONSENTED)  # requested and then given for the same activity

    def choose(ask: Ask):
        arch, node = _archetype(ask.path), (re.findall(r"\[(at[0-9.]+)\]", ask.path) or [""])[-1]
        if ask.kind == "occurrences" and not ask.path.endswith("]"):
            return ask.default
        if ask.kind == "occurrences":  # one entry, one event; optional clusters and state items left out
            return 1 if re.search(r"(content|events)\[[^\]]+\]$", ask.path) else ask.low or 0
        if ask.kind == "magnitude" and (arch, node) in RANGES:
            low, high = RANGES[(arch, node)]
            return round(rng.uniform(low, high), ask.digits if ask.digits is not None else 1)
        if ask.kind == "unit" and arch in UNITS and UNITS[arch] in ask.options:
            return UNITS[arch]
        if ask.kind == "code" and node == "at0089" and arch in ("tobacco_smoking_summary",
                                                                "alcohol_consumption_summary") and ask.options:
            return rng.choice(sorted(ask.options))
        if ask.kind == "text" and (arch, node) == ("clinical_synopsis", "at0002"):
            return rng.choice(SYNOPSES)
        if ask.kind == "text" and (arch, node) == ("imaging_exam_result", "at0004"):
            return rng.choice(STUDIES)
        if ask.kind == "text" and (arch, node) == ("imaging_exam_result", "at0021"):
            return rng.choice(IMPRESSIONS)
        if ask.kind == "text" and arch == "imaging_exam" and node in ("at0001", "at0004"):
            return structure[0 if node == "at0001" else 1]
        if ask.kind == "text" and (arch, node) == ("family_history", "at0016"):
            return rng.choice(RELATIVES)
        if ask.kind == "text" and (arch, node) == ("vaccination_summary", "at0052"):
            return rng.choice(VACCINES)
        if ask.kind == "code" and (arch, node) == ("imaging_exam_result", "at0072") and "at0076" in ask.options:
            return "at0076"  # a reported study: Final
        if ask.kind == "code" and (arch, node) == ("imaging_exam_result", "at0099") and "at0101" in ask.options:
            return "at0101"  # its images: Available
        if ask.kind == "text" and (arch, node) in (("informed_consent", "at0002"),
                                                   ("informed_consent_request", "at0004")):
            return consented
        if ask.kind == "code" and arch == "informed_consent" and ask.path.endswith("/careflow_step") \
                and "at0015" in ask.options:
            return "at0015"  # informed consent provided
        if ask.kind == "text" and arch == "medication" and node in ("at0132", "at0071"):
            return medication[0 if node == "at0132" else 1]
        if ask.kind == "datetime":
            return (datetime.fromisoformat(ask.default) + shift).isoformat()
        if ask.kind == "date":
            return (date.fromisoformat(ask.default) + timedelta(days=shift.days)).isoformat()
        return ask.default
    return choose


def general_composition(seed: int, subject_id: str, visit: datetime) -> dict:
    """The patient's general-record composition (canonical JSON, no uid)."""
    rng = random.Random(f"general|{seed}|{subject_id}")
    comp = example_composition(OPT_PATH.read_bytes(), values=_chooser(rng, visit))
    comp.pop("uid", None)
    for entry in comp["content"]:
        if entry["archetype_node_id"].endswith(".head_circumference.v1"):  # an adult's record: no birth event
            history = entry["data"]
            history["events"] = [e for e in history["events"] if e["archetype_node_id"] != "at0011"]
        if entry["archetype_node_id"].endswith(".informed_consent.v0"):  # given, still valid: no end date
            items = entry["description"]["items"]
            items[:] = [i for i in items if i["archetype_node_id"] != "at0009"]
        if entry["archetype_node_id"].endswith(".imaging_exam_result.v1"):
            for item in (entry.get("protocol") or {}).get("items") or []:
                if item["archetype_node_id"] == "at0092":  # the study's DICOM UID (no organisation root made up)
                    item["value"] = {"_type": "DV_IDENTIFIER", "id": study_uid(seed, subject_id)}
        if entry["archetype_node_id"].endswith(".medication_statement.v0"):  # named by its details cluster alone
            for event in entry["data"]["events"]:
                event["data"]["items"] = [i for i in event["data"]["items"] if i["archetype_node_id"] != "at0006"]
    return comp


def seed_general(client: OpenEHRClient, ehr_id: str, seed: int, subject_id: str, visit: datetime) -> VersionRef | None:
    """Commit the composition once (uid ``general_uid``); None when the site has it already."""
    uid = general_uid(seed, subject_id)
    try:
        client.get_composition(ehr_id, uid)
        return None
    except NotFound:
        pass
    system_id = client.get_ehr(ehr_id).system_id
    comp = {**general_composition(seed, subject_id, visit), "uid": {"_type": "OBJECT_VERSION_ID",
                                                                   "value": f"{uid}::{system_id}::1"}}
    try:
        return client.create_composition(ehr_id, comp)
    except InvalidRequest as exc:
        if "already exists" not in str(exc.detail):  # a racing seeder committed it
            raise
        return None
