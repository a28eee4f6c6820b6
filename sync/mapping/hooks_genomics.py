"""Hooks (``mappingCode``) of the genomics row: CLUSTER.genomic_variant_result.v1 in a laboratory result's
'Test result' slot (its CKM use) <-> an mCODE STU4 genomic variant Observation (genomics-reporting Variant).

``genomicVariant`` maps the first 'Transcript' cluster (at0008) to the Variant's components, with the LOINC
codes and code systems of mCODE STU4's own genomic variant examples:

* gene symbol (at0019/at0020) -> 48018-6 'Gene studied [ID]', valueCodeableConcept.text: the archetype has
  the symbol only, not the HGNC id the genenames.org coding needs;
* DNA change (at0011, DV_PARSABLE) -> 48004-6 'DNA change (c.HGVS)', a http://varnomen.hgvs.org coding;
* amino acid change (at0012, DV_PARSABLE) -> 48005-3 'Amino acid change (pHGVS)', same system.

Back, those components rebuild one Transcript cluster (formalism ``HGVS``; another formalism of the source
stays in the residue).  No Observation.value: the genetic variant assessment's LL1971-2 answer (present...)
is CLUSTER.genetic_variant_presence.v0's (its own Observation), and the ACMG classification (at0058) is the genomics-reporting
diagnostic-implication's (53037-8), a separate Observation: residue.  The profile is always declared: it
requires only the category, code and status the file fixes.
"""
from __future__ import annotations

from .runtime import FWD

PROFILE = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-genomic-variant"
LOINC, HGVS = "http://loinc.org", "http://varnomen.hgvs.org"
GENE, DNA, PROTEIN = "48018-6", "48004-6", "48005-3"
DISPLAY = {GENE: "Gene studied [ID]", DNA: "DNA change (c.HGVS)", PROTEIN: "Amino acid change (pHGVS)"}
TRANSCRIPT = ("at0008", "Transcript")
PARSABLE = {DNA: ("at0011", "DNA change"), PROTEIN: ("at0012", "Amino acid change")}
GENE_CLUSTER, SYMBOL = ("at0019", "Gene"), ("at0020", "Gene symbol")


def _el(node: tuple[str, str], value: dict) -> dict:
    return {"_type": "ELEMENT", "archetype_node_id": node[0], "name": {"_type": "DV_TEXT", "value": node[1]},
            "value": value}


def _child(node: dict, at: str) -> dict | None:
    return next((i for i in node.get("items") or [] if i.get("archetype_node_id") == at), None)


def _text(node: dict | None) -> str | None:
    value = (node or {}).get("value")
    return value.get("value") if isinstance(value, dict) and isinstance(value.get("value"), str) else None


def _component(code: str, concept: dict) -> dict:
    return {"code": {"coding": [{"system": LOINC, "code": code, "display": DISPLAY[code]}]},
            "valueCodeableConcept": concept}


def genomic_variant(ctx, rule, onode, fobj, fmodel, direction):
    if direction == FWD:
        _forward(onode, ctx.resource)
    else:
        _back(ctx.resource, onode)


def _forward(cluster: dict, obs: dict) -> None:
    obs.setdefault("meta", {}).setdefault("profile", []).append(PROFILE)
    transcript = _child(cluster, TRANSCRIPT[0])
    if transcript is None:
        return
    out = []
    symbol = _text(_child(_child(transcript, GENE_CLUSTER[0]) or {}, SYMBOL[0]))
    if symbol:
        out.append(_component(GENE, {"text": symbol}))
    for code, node in PARSABLE.items():
        hgvs = _text(_child(transcript, node[0]))
        if hgvs:
            out.append(_component(code, {"coding": [{"system": HGVS, "code": hgvs}]}))
    if out:
        obs.setdefault("component", []).extend(out)


def _code(component: dict) -> str | None:
    return next((c.get("code") for c in (component.get("code") or {}).get("coding") or []
                 if c.get("system") == LOINC), None)


def _back(obs: dict, cluster: dict) -> None:
    items = []
    for comp in obs.get("component") or []:
        code, concept = _code(comp), comp.get("valueCodeableConcept") or {}
        symbol = concept.get("text") or next((c.get("display") for c in concept.get("coding") or []), None)
        if code == GENE and symbol:  # a central HGNC coding's display is the symbol (mCODE's examples)
            items.append({"_type": "CLUSTER", "archetype_node_id": GENE_CLUSTER[0],
                          "name": {"_type": "DV_TEXT", "value": GENE_CLUSTER[1]},
                          "items": [_el(SYMBOL, {"_type": "DV_TEXT", "value": symbol})]})
        elif code in PARSABLE:
            hgvs = next((c.get("code") for c in concept.get("coding") or [] if c.get("system") == HGVS), None)
            if hgvs:
                items.append(_el(PARSABLE[code], {"_type": "DV_PARSABLE", "value": hgvs, "formalism": "HGVS"}))
    if items:
        cluster.setdefault("items", []).append({"_type": "CLUSTER", "archetype_node_id": TRANSCRIPT[0],
                                                "name": {"_type": "DV_TEXT", "value": TRANSCRIPT[1]}, "items": items})
