#!/usr/bin/env python3
"""Build ConflictDesk's general-record operational template (OPT 1.4): the rest of a cancer patient's record
(issue 18), beside the oncology encounter.

    .venv/bin/python deploy/templates/build_general_opt.py           # (re)write conflictdesk_general.v1.opt
    .venv/bin/python deploy/templates/build_general_opt.py --check   # exit 1 if the file is stale

COMPOSITION encounter.v1 (lifted, as the oncology template does, from the corpus NEWS2 OPT) whose content is
the issue-18 archetypes, each read whole from its CKM ADL 1.4 file in the vendored corpus (CONTENT).  The
writing is the oncology builder's (imported from beside this file): one way to emit an OPT.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # build_oncology_opt.py (and adl.py) sit beside this script
    sys.path.insert(0, str(HERE))
import build_oncology_opt as onc  # noqa: E402  (the OPT writer)

TEMPLATE_ID = "ConflictDesk General Record.v1"
OUT = HERE / "conflictdesk_general.v1.opt"
CONTENT = ("OBSERVATION.body_mass_index.v2", "OBSERVATION.head_circumference.v1",
           "EVALUATION.tobacco_smoking_summary.v2", "EVALUATION.alcohol_consumption_summary.v1",
           "EVALUATION.clinical_synopsis.v1", "OBSERVATION.imaging_exam_result.v1",
           "ADMIN_ENTRY.episode_institution.v0", "EVALUATION.vaccination_summary.v0",
           "EVALUATION.family_history.v2", "OBSERVATION.medication_statement.v0",
           "INSTRUCTION.informed_consent_request.v0", "ACTION.informed_consent.v0")

# entry -> {slot text: the CLUSTER filling it}
SLOTS = {"OBSERVATION.imaging_exam_result.v1": {"Structured imaging findings": "CLUSTER.imaging_exam.v1"},
         "OBSERVATION.medication_statement.v0": {"Medication details": "CLUSTER.medication.v2"}}


def build() -> bytes:
    comp = onc.lift("news2_encounter_vitals.opt", "openEHR-EHR-COMPOSITION.encounter.v1",
                    texts={"at0000": "ConflictDesk General Record"})
    content = next(at for at in comp.findall(onc.q("attributes"))
                   if at.findtext(onc.q("rm_attribute_name")) == "content")
    for ch in content.findall(onc.q("children")):
        content.remove(ch)
    card = content.find(onc.q("cardinality"))
    content.remove(card)
    for aid in CONTENT:
        arch = onc.read_adl(onc.ADL_DIR / f"openEHR-EHR-{aid}.adl")
        slots = {onc.find_slot_node(arch, slot): [onc.archetype_root(onc.read_adl(onc.ADL_DIR / f"openEHR-EHR-{c}.adl"),
                                                                      (0, None))]
                 for slot, c in SLOTS.get(aid, {}).items()}
        content.append(onc.archetype_root(arch, fillers=slots))
    content.append(card)
    purpose = ("General record of a cancer patient beside the oncology encounter: body mass index, head "
               "circumference, tobacco smoking, alcohol consumption, clinical synopsis, imaging examination result, "
               "episode at the institution, vaccination summary, family history, a medication use statement with its "
               "medication details, an informed consent request and the informed consent. "
               "Test, demo and mapping template of ConflictDesk.")
    use = ("Built by deploy/templates/build_general_opt.py from the CKM ADL 1.4 archetypes in the corpus: "
           + ", ".join(CONTENT) + " (CLUSTER.imaging_exam.v1 in the imaging result's structured findings, CLUSTER.medication.v2 in the "
           "statement's medication details); "
           "COMPOSITION.encounter.v1 lifted from news2_encounter_vitals.opt.")
    return onc.serialise(onc.wrap(comp, TEMPLATE_ID, purpose, use))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true", help="fail if the committed OPT differs from a fresh build")
    args = ap.parse_args(argv)
    data = build()
    if args.check:
        same = args.out.exists() and args.out.read_bytes() == data
        print(f"{args.out}: {'up to date' if same else 'STALE'}")
        return 0 if same else 1
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data)} bytes, template_id {TEMPLATE_ID!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
