"""Small operational templates, one per family of ADL constructs, built from every corpus archetype.

Each family is a COMPOSITION archetype of the corpus whose open `content` carries the family's
ENTRY archetypes; each family CLUSTER fills the first slot (of those entries, then of the
COMPOSITION) whose include patterns match its id and whose exclude patterns do not. Together the
families hold every corpus archetype once, so uploading them to EHRbase checks the whole corpus.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

ROOT_PREFIX = "openEHR-EHR-"
TEMPLATE_PREFIX = "ConflictDesk ADL check "

# family -> (COMPOSITION, ENTRY archetypes, CLUSTER archetypes); ids without the openEHR-EHR- prefix
FAMILIES: dict[str, tuple[str, list[str], list[str]]] = {
    # C_DV_ORDINAL lists, C_DV_QUANTITY with '>=' and exclusive bounds
    "ordinal": ("COMPOSITION.problem_list.v2",
                ["OBSERVATION.ecog.v2", "OBSERVATION.karnofsky_performance_status_scale.v1",
                 "EVALUATION.alcohol_consumption_summary.v1", "EVALUATION.tobacco_smoking_summary.v2"],
                ["CLUSTER.ctcae.v1", "CLUSTER.gleason_score.v0", "CLUSTER.lymph_node_metastases.v0",
                 "CLUSTER.tumour_resection_margins.v0"]),
    # ACTIVITY.action_archetype_id (C_STRING pattern), ISM transitions
    "activity": ("COMPOSITION.care_plan.v0",
                 ["INSTRUCTION.care_plan_request.v0", "INSTRUCTION.informed_consent_request.v0",
                  "ACTION.care_plan.v0", "ACTION.informed_consent.v0"],
                 ["CLUSTER.consent_details.v0"]),
    # ARCHETYPE_INTERNAL_REF (use_node), DV_QUANTITY |0.0..<1000.0|
    "internal_ref": ("COMPOSITION.adverse_reaction_list.v1",
                     ["OBSERVATION.head_circumference.v1", "OBSERVATION.body_mass_index.v2"], []),
    # a specialised archetype (tnm-pathological.v1 flattened onto tnm.v1) beside its parent
    "specialisation": ("COMPOSITION.medication_list.v1", ["EVALUATION.problem_diagnosis.v1"],
                       ["CLUSTER.tnm.v1", "CLUSTER.tnm-pathological.v1"]),
}
REST = "rest"  # every other corpus archetype, under COMPOSITION.problem_list.v2


def corpus_ids(adl_dir) -> list[str]:
    return sorted(p.name[len(ROOT_PREFIX):-len(".adl")] for p in adl_dir.glob(ROOT_PREFIX + "*.adl"))


def families(adl_dir) -> dict[str, tuple[str, list[str], list[str]]]:
    out = dict(FAMILIES)
    used = {a for comp, entries, clusters in out.values() for a in [comp, *entries, *clusters]}
    rest = [a for a in corpus_ids(adl_dir) if a not in used]
    out[REST] = ("COMPOSITION.problem_list.v2",
                 [a for a in rest if not a.startswith(("CLUSTER.", "COMPOSITION."))],
                 [a for a in rest if a.startswith("CLUSTER.")])
    leftover = [a for a in rest if a.startswith("COMPOSITION.")]
    assert not leftover, f"COMPOSITION archetypes no family roots: {leftover}"
    return out


def template_id(family: str) -> str:
    return f"{TEMPLATE_PREFIX}{family}.v0"


def _slots(arch, adl):
    for o in adl.walk(arch.definition):
        if o.kind == "slot":
            yield o


def _accepts(slot, archetype_id: str) -> bool:
    return any(re.fullmatch(p, archetype_id) for p in slot.includes) and \
        not any(re.fullmatch(p, archetype_id) for p in slot.excludes)


def build(builder, family: str, spec) -> bytes:
    """The OPT bytes of one family."""
    adl = __import__("sys").modules["adl"]
    read = lambda short: builder.read_adl(builder.ADL_DIR / f"{ROOT_PREFIX}{short}.adl")  # noqa: E731
    comp_id, entry_ids, cluster_ids = spec
    comp = read(comp_id)
    entries = [read(e) for e in entry_ids]
    fillers: dict[int, dict[str, list]] = {k: {} for k in range(len(entries) + 1)}  # entry index -> slot -> roots
    hosts = [*entries, comp]
    for cid in cluster_ids:
        cluster = read(cid)
        for k, host in enumerate(hosts):
            slot = next((s for s in _slots(host, adl) if _accepts(s, cluster.archetype_id)), None)
            if slot is not None:
                fillers[k].setdefault(slot.node_id, []).append(builder.archetype_root(cluster, (0, None)))
                break
        else:
            raise AssertionError(f"{family}: no slot takes {cluster.archetype_id}")
    roots = [builder.archetype_root(e, (0, None), fillers[k]) for k, e in enumerate(entries)]
    root = builder.archetype_root(comp, (1, 1), fillers[len(entries)], added={"content": roots})
    tid = template_id(family)
    tree = builder.wrap(root, tid, f"Check of the ADL 1.4 reader: the {family} family of the corpus.",
                        "Built by tests/templates/families.py; not a clinical template.")
    return builder.serialise(tree)


def parse(data: bytes) -> ET.Element:
    return ET.fromstring(data)
