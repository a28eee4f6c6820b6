"""FHIR-born resources varied where the mapping decides things: code, category and BackboneElements (issue 21).

test_fhir_born_properties adds base elements of simple types and keeps code and category as the seed has them.
Here hypothesis also changes what claims a resource and what the archetypes hold: extra or replaced codings and
texts in ``code`` and ``category``, and BackboneElements of the base resource (Observation.referenceRange and
component, Condition.stage and evidence, Procedure.performer and focalDevice, MedicationRequest.dispenseRequest
and substitution, MedicationAdministration.performer and dosage, Goal.target, RiskAssessment.prediction...)
filled from their own element types, codes of required bindings drawn from the binding.

The property: FHIR -> openEHR -> FHIR gives the resource back equal on clinical content, or every element
that does not come back is reported (``from_fhir().losses`` names it, or the resource is refused as a whole:
UnmappedTemplate, an 'unmapped-resource'/'unmapped-entry' loss).  Never a silent difference."""
import copy
import re

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from sync.mapping import compare_clinical, fhirmodel, from_fhir, to_fhir, validate_fhir
from sync.mapping.errors import UnmappedTemplate
from sync.mapping.residue import strip

from .test_fhir_born_properties import SEEDS, UCUM, VALUES, _text, _when, patient_of

UID = "aaaaaaaa-0000-4000-8000-000000000212::x::1"
ADDED = ("dictionary_item_added", "iterable_item_added")
_NOT_GENERATED = {"id", "extension", "modifierExtension", "fhir_comments"}
_quantity = st.builds(lambda v, u: {"value": v, "unit": u, "system": UCUM, "code": u},
                      st.integers(min_value=0, max_value=500), st.sampled_from(["mg", "mmol/L", "g/dL", "%"]))
LEAVES = {**VALUES,
          "Quantity": _quantity,
          "Range": st.builds(lambda lo, hi: {"low": lo, "high": hi}, _quantity, _quantity),
          "integer": st.integers(min_value=0, max_value=100),
          "decimal": st.integers(min_value=0, max_value=100),
          "positiveInt": st.integers(min_value=1, max_value=100),
          "unsignedInt": st.integers(min_value=0, max_value=100),
          "date": st.sampled_from(["2024-05-01", "2025-01-31"]),
          "instant": _when,
          "uri": st.sampled_from(["https://example.org/a", "urn:example:b"])}
LEAVES.pop("Extension")  # extensions: the base-element test's
_sct = st.builds(lambda c, d: {"system": "http://snomed.info/sct", "code": c, "display": d},
                 st.text(alphabet="0123456789", min_size=6, max_size=9), _text)


def _backbone(tname: str) -> bool:
    return not fhirmodel.is_primitive(tname) and tname not in LEAVES and tname[:1].isupper() \
        and not fhirmodel.is_resource(tname) and bool(fhirmodel.fields(tname)) and tname not in (
            "Meta", "Narrative", "Extension", "Resource", "Timing", "SampledData", "Ratio", "Attachment",
            "ContactPoint", "HumanName", "Address", "Signature", "Money", "Duration", "Age", "Count", "Distance")


def _leaf(model: str, name: str, tname: str):
    codes = fhirmodel.allowed_codes(model, name)
    if codes:
        return st.sampled_from(sorted(codes))  # a code of a required binding: one of the binding's
    return LEAVES.get(tname)


@st.composite
def _element(draw, model: str, depth: int = 0):
    """A BackboneElement of ``model``: any of its generated sub-elements (one choice per choice group)."""
    out, groups = {}, set()
    for name, (is_list, tname) in sorted(fhirmodel.fields(model).items()):
        if name in _NOT_GENERATED or not draw(st.booleans()):
            continue
        group = next((name[:i] for i in range(1, len(name)) if name[i].isupper()
                      and len(fhirmodel.choices(model, name[:i])) > 1), None)
        if group in groups:
            continue
        strategy = _leaf(model, name, tname)
        if strategy is None and depth == 0 and _backbone(tname):
            strategy = _element(tname, depth + 1)
        if strategy is None:
            continue
        value = draw(strategy)
        if value in ({}, None):
            continue
        groups.add(group)
        out[name] = [value] if is_list else value
    return out


def _backbones(rtype: str) -> dict[str, tuple[bool, str]]:
    return {n: (lst, t) for n, (lst, t) in fhirmodel.fields(rtype).items()
            if _backbone(t) and n not in ("contained", "meta", "text")}


@st.composite
def _coded(draw, current):
    """code / category varied: codings added beside the sender's, replaced, or a text changed."""
    how = draw(st.sampled_from(["keep", "add", "replace", "text"]))
    cc = copy.deepcopy(current) if isinstance(current, dict) else {}
    if how == "add":
        cc["coding"] = [*cc.get("coding", []), draw(_sct)]
    elif how == "replace":
        cc = {"coding": [draw(_sct)]}
    elif how == "text":
        cc["text"] = draw(_text)
    return cc


@st.composite
def _varied(draw, kind: str):
    sent = SEEDS[kind]()
    rtype = sent["resourceType"]
    if "code" in fhirmodel.fields(rtype) and not fhirmodel.fields(rtype)["code"][0] and "code" in sent:
        sent["code"] = draw(_coded(sent["code"]))
    if "category" in fhirmodel.fields(rtype):
        cats = sent.get("category")
        cats = cats if isinstance(cats, list) else [cats] if cats else []
        varied = [draw(_coded(c)) for c in cats]
        if draw(st.booleans()):
            varied.append({"coding": [draw(_sct)]})
        if varied and fhirmodel.fields(rtype)["category"][0]:
            sent["category"] = varied
        elif varied:
            sent["category"] = varied[0]
    backbones = _backbones(rtype)
    for name in draw(st.lists(st.sampled_from(sorted(backbones)), unique=True, max_size=3)) if backbones else []:
        is_list, tname = backbones[name]
        value = draw(_element(tname))
        if value:
            sent[name] = [value] if is_list else value
    return sent


def _top(path: str) -> str:
    element = path.split(":", 1)[1] if ":" in path else ""
    m = re.match(r"[A-Za-z]+", element)
    return m.group(0) if m else ""


@pytest.mark.parametrize("kind", sorted(SEEDS))
def test_every_mapped_type_has_backbone_elements_to_generate(kind):
    """R4 ServiceRequest has none (its code and category are still varied)."""
    assert bool(_backbones(SEEDS[kind]()["resourceType"])) == (kind != "ServiceRequest"), kind


@pytest.mark.parametrize("kind", sorted(SEEDS))
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(data=st.data())
def test_a_varied_fhir_born_resource_comes_back_equal_or_its_loss_is_reported(kind, data):
    sent = data.draw(_varied(kind))
    assume(validate_fhir(sent) == [])  # what a FHIR server would accept: required elements of each backbone
    try:
        out = from_fhir([copy.deepcopy(sent)], template_id="t")
    except UnmappedTemplate:
        event("refused: no file claims it")
        return  # refused as a whole, loudly: no file claims it any more (its code or category changed)
    whole = [x for x in out.losses if x.kind in ("unmapped-resource", "unmapped-entry")
             or x.path == f"{sent['resourceType']}/{sent.get('id')}"]  # a loss of the resource as a whole
    if whole:
        event("reported: no entry made")
        return  # reported: no entry is made of it
    comp = {**copy.deepcopy(out.composition), "uid": {"value": UID}}
    made = to_fhir(comp, site="s", ehr_id="e", patient_ref=patient_of(sent)).resources
    twins = [r for r in made if r["resourceType"] == sent["resourceType"]]
    assert twins, "an entry was made but no resource of the type comes back and nothing was reported"
    twin = strip(twins[0])
    lost = {_top(x.path) for x in out.losses}
    diffs = {re.match(r"root\['([^']+)'\]", d["path"]).group(1)
             for d in compare_clinical(sent, twin) if d["kind"] not in ADDED}
    event("compared, losses reported" if lost else "compared, nothing lost")
    assert diffs <= lost, (sorted(diffs - lost), [(x.path, x.kind) for x in out.losses])
