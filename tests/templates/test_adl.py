"""The ADL 1.4 reader (deploy/templates/adl.py) and the OPT 1.4 it writes for each construct of the corpus."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from tests.templates import families as fam

NS = {"o": "http://schemas.openehr.org/v1"}
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
SCALE_ADL = '''archetype (adl_version=1.4)
	openEHR-EHR-CLUSTER.conflictdesk_scale_check.v0
concept
	[at0000]	-- Scale check
language
	original_language = <[ISO_639-1::en]>
definition
	CLUSTER[at0000] matches {	-- Scale check
		items cardinality matches {1..*; unordered; unique} matches {
			ELEMENT[at0001] occurrences matches {0..1} matches {	-- Score
				value matches {
					0.5|[local::at0002],	-- Low
					1.5|[local::at0003];	-- High
					1.5
				}
			}
			ELEMENT[at0004] occurrences matches {0..1} matches {	-- Kind -- "with -- inside"
				value matches {
					DV_CODED_TEXT matches {
						defining_code matches {[local::at0002, at0003; at0003]}
					}
					DV_TEXT matches {
						value matches {"a -- b", "c"; "c"}
					}
				}
			}
			ELEMENT[at0005] occurrences matches {0..1} matches {	-- Amount
				value matches {
					C_DV_QUANTITY <
						property = <[openehr::122]>
						list = <
							["1"] = <
								units = <"mm">
								magnitude = <|>0.0..<10.0|>
							>
						>
						assumed_value = <
							magnitude = <2.0>
							units = <"mm">
						>
					>
				}
			}
		}
	}
ontology
	term_definitions = <
		["en"] = <
			items = <
				["at0000"] = <text = <"Scale check"> description = <"Test only: not a clinical archetype.">>
				["at0001"] = <text = <"Score"> description = <"A DV_SCALE.">>
				["at0002"] = <text = <"Low"> description = <"Half a point.">>
				["at0003"] = <text = <"High"> description = <"One and a half points.">>
				["at0004"] = <text = <"Kind"> description = <"Coded or text.">>
				["at0005"] = <text = <"Amount"> description = <"A quantity.">>
			>
		>
	>
'''


def _read(builder, short: str):
    return builder.read_adl(builder.ADL_DIR / f"openEHR-EHR-{short}.adl")


def _find(adl, arch, node_id: str):
    return next(o for o in adl.walk(arch.definition) if o.node_id == node_id)


def _xml(builder, arch, **kw) -> ET.Element:
    el = builder.archetype_root(arch, **kw)
    return ET.fromstring(ET.tostring(el))


def _children(el: ET.Element, xsi_type: str) -> list[ET.Element]:
    return [c for c in el.iter("{%s}children" % NS["o"]) if c.get(XSI_TYPE) == xsi_type]


def _node(el: ET.Element, node_id: str) -> ET.Element:
    return next(c for c in el.iter("{%s}children" % NS["o"]) if c.findtext("o:node_id", namespaces=NS) == node_id)


def _text(el: ET.Element, path: str) -> str | None:
    return el.findtext(path, namespaces=NS)


# --- the whole corpus -----------------------------------------------------------------------------
def test_every_corpus_archetype_is_read_completely(builder, adl):
    """What the definition text declares (node ids, ordinal items, code phrases, quantities, use_node,
    slots, codes) is what the tree holds: nothing skipped or merged silently."""
    for path in sorted(builder.ADL_DIR.glob("openEHR-EHR-*.adl")):
        sec = adl._sections(path.read_text(encoding="utf-8-sig").replace("\r\n", "\n"), path.name)
        text = adl._strip_comments(sec["definition"])
        objs = list(adl.walk(builder.read_adl(path).definition))
        phrases = re.findall(r"(?<!\|)\[([A-Za-z0-9_-]+)::([^\]]*)\]", text)
        quantity_props = len(re.findall(r"property\s*=\s*<\[", text))
        want = {
            "node ids": len(re.findall(r"\b[A-Z][A-Z0-9_]*(?:<[A-Z_]+>)?\[at[0-9.]+\]", text)),
            "ordinal items": len(re.findall(r"[+\-]?\d+(?:\.\d+)?\|\[", text)),
            "code phrases": len(phrases) - quantity_props,
            "quantities": text.count("C_DV_QUANTITY"),
            "use_node": len(re.findall(r"\buse_node\b", text)),
            "slots": len(re.findall(r"\ballow_archetype\b", text)),
        }
        got = {
            "node ids": sum(1 for o in objs if o.node_id),
            "ordinal items": sum(len(o.ordinals) for o in objs),
            "code phrases": sum(1 for o in objs if o.kind == "code_phrase"),
            "quantities": sum(1 for o in objs if o.kind == "dv_quantity"),
            "use_node": sum(1 for o in objs if o.kind == "internal_ref"),
            "slots": sum(1 for o in objs if o.kind == "slot"),
        }
        assert got == want, path.name


def test_families_hold_every_corpus_archetype_once(builder):
    fams = fam.families(builder.ADL_DIR)
    held = [a for comp, entries, clusters in fams.values() for a in [*entries, *clusters]]
    roots = {comp for comp, _, _ in fams.values()}
    assert sorted(held + sorted(roots)) == fam.corpus_ids(builder.ADL_DIR)
    assert len(held) == len(set(held))


@pytest.mark.parametrize("family", [*fam.FAMILIES, fam.REST])
def test_family_opts_build(builder, family):
    fams = fam.families(builder.ADL_DIR)
    root = ET.fromstring(fam.build(builder, family, fams[family]))
    assert _text(root, "o:template_id/o:value") == fam.template_id(family)
    ids = {_text(c, "o:archetype_id/o:value") for c in _children(root, "C_ARCHETYPE_ROOT")}
    comp, entries, clusters = fams[family]
    assert ids == {f"openEHR-EHR-{a}" for a in [*entries, *clusters]}
    assert _text(root, "o:definition/o:archetype_id/o:value") == f"openEHR-EHR-{comp}"


# --- DV_ORDINAL / DV_SCALE -------------------------------------------------------------------------
def test_ordinal_list(builder, adl):
    ctcae = _read(builder, "CLUSTER.ctcae.v1")
    grade = _find(adl, ctcae, "at0003").attributes[0].children
    assert [(o.kind, o.rm_type) for o in grade] == [("ordinal", "DV_ORDINAL")]
    assert grade[0].ordinals == [("0", "local", "at0021"), ("1", "local", "at0015"), ("2", "local", "at0016"),
                                 ("3", "local", "at0017"), ("4", "local", "at0018"), ("5", "local", "at0019")]
    el = _node(_xml(builder, ctcae), "at0003")
    (c,) = _children(el, "C_DV_ORDINAL")
    assert _text(c, "o:rm_type_name") == "DV_ORDINAL"
    items = c.findall("o:list", NS)
    assert [(_text(i, "o:value"), _text(i, "o:symbol/o:defining_code/o:code_string"),
             _text(i, "o:symbol/o:defining_code/o:terminology_id/o:value")) for i in items][:2] == \
        [("0", "at0021", "local"), ("1", "at0015", "local")]
    assert _text(items[0], "o:symbol/o:value") == ctcae.terms["at0021"]["text"]
    # element order of DV_ORDINAL (RM DataTypes.xsd): value, then symbol (DV_CODED_TEXT: value, defining_code)
    assert [ch.tag.split("}")[1] for ch in items[0]] == ["value", "symbol"]
    assert [ch.tag.split("}")[1] for ch in items[0].find("o:symbol", NS)] == ["value", "defining_code"]


@pytest.mark.parametrize("short,count", [("CLUSTER.gleason_score.v0", 4), ("OBSERVATION.ecog.v2", 1),
                                         ("OBSERVATION.karnofsky_performance_status_scale.v1", 1)])
def test_ordinal_archetypes(builder, adl, short, count):
    arch = _read(builder, short)
    ordinals = [o for o in adl.walk(arch.definition) if o.kind == "ordinal"]
    assert len(ordinals) == count
    assert len(_children(_xml(builder, arch), "C_DV_ORDINAL")) == count


def test_scale_list_assumed_values_and_comments(builder, adl, tmp_path):
    path = tmp_path / "openEHR-EHR-CLUSTER.conflictdesk_scale_check.v0.adl"
    path.write_text(SCALE_ADL)
    arch = builder.read_adl(path)
    (scale,) = [o for o in adl.walk(arch.definition) if o.kind == "scale"]
    assert scale.rm_type == "DV_SCALE" and scale.assumed == "1.5"
    assert scale.ordinals == [("0.5", "local", "at0002"), ("1.5", "local", "at0003")]
    assert arch.definition.attributes[0].unique
    el = _xml(builder, arch)
    (c,) = _children(el, "C_DV_SCALE")
    assert [ch.tag.split("}")[1] for ch in c][3:] == ["assumed_value", "list", "list"]
    assert _text(c, "o:assumed_value/o:symbol/o:defining_code/o:code_string") == "at0003"
    # '--' inside a string is text, not a comment; assumed values of codes and strings
    (phrase,) = _children(el, "C_CODE_PHRASE")
    assert [ch.tag.split("}")[1] for ch in phrase][3:] == ["assumed_value", "terminology_id", "code_list", "code_list"]
    assert _text(phrase, "o:assumed_value/o:code_string") == "at0003"
    string = next(c for c in _children(el, "C_PRIMITIVE_OBJECT") if _text(c, "o:rm_type_name") == "STRING")
    assert [i.text for i in string.findall("o:item/o:list", NS)] == ["a -- b", "c"]
    assert _text(string, "o:item/o:assumed_value") == "c"
    (q,) = _children(el, "C_DV_QUANTITY")
    assert [ch.tag.split("}")[1] for ch in q][3:] == ["assumed_value", "property", "list"]
    assert (_text(q, "o:assumed_value/o:magnitude"), _text(q, "o:assumed_value/o:units")) == ("2.0", "mm")
    mag = q.find("o:list/o:magnitude", NS)
    assert [_text(mag, f"o:{k}") for k in ("lower_included", "upper_included", "lower", "upper")] == \
        ["false", "false", "0.0", "10.0"]
    assert _node(el, "at0000").find("o:attributes/o:cardinality/o:is_unique", NS).text == "true"


# --- ACTIVITY.action_archetype_id --------------------------------------------------------------------
@pytest.mark.parametrize("short,pattern", [
    ("INSTRUCTION.care_plan_request.v0", r"openEHR-EHR-ACTION\.care_plan\.v1"),
    ("INSTRUCTION.informed_consent_request.v0", r"openEHR-EHR-ACTION\.informed_consent\.v1"),
])
def test_action_archetype_id_is_a_string_pattern(builder, short, pattern):
    el = _xml(builder, _read(builder, short))
    attr = next(a for a in el.iter("{%s}attributes" % NS["o"])
                if _text(a, "o:rm_attribute_name") == "action_archetype_id")
    assert _text(attr, "o:existence/o:lower") == "1"  # mandatory in the RM
    (c,) = attr.findall("o:children", NS)
    assert c.get(XSI_TYPE) == "C_PRIMITIVE_OBJECT" and _text(c, "o:rm_type_name") == "STRING"
    assert c.find("o:item", NS).get(XSI_TYPE) == "C_STRING"
    assert _text(c, "o:item/o:pattern") == pattern


# --- use_node -----------------------------------------------------------------------------------------
def test_use_node(builder, adl):
    head = _read(builder, "OBSERVATION.head_circumference.v1")
    refs = [o for o in adl.walk(head.definition) if o.kind == "internal_ref"]
    assert [(r.rm_type, r.target_path) for r in refs] == [
        ("ITEM_TREE", "/data[at0001]/events[at0010]/data[at0003]"),
        ("ITEM_TREE", "/data[at0001]/events[at0010]/state[at0008]")]
    assert adl.resolve(head.definition, refs[0].target_path).node_id == "at0003"
    birth_keep = _node(_xml(builder, head, internal_refs="keep"), "at0011")
    kept = _children(birth_keep, "ARCHETYPE_INTERNAL_REF")
    assert [(_text(k, "o:rm_type_name"), _text(k, "o:target_path"), _text(k, "o:occurrences/o:upper")) for k in kept] \
        == [("ITEM_TREE", r.target_path, "1") for r in refs]
    birth = _node(_xml(builder, head), "at0011")  # default: expanded, as EHRbase needs
    assert not _children(birth, "ARCHETYPE_INTERNAL_REF")
    data = next(a for a in birth.findall("o:attributes", NS) if _text(a, "o:rm_attribute_name") == "data")
    (tree,) = data.findall("o:children", NS)
    assert (_text(tree, "o:rm_type_name"), _text(tree, "o:node_id")) == ("ITEM_TREE", "at0003")
    assert _node(tree, "at0004") is not None  # the head circumference element, copied


def test_use_node_to_a_missing_path_is_refused(builder, tmp_path):
    src = (builder.ADL_DIR / "openEHR-EHR-OBSERVATION.head_circumference.v1.adl").read_text(encoding="utf-8-sig")
    path = tmp_path / "openEHR-EHR-OBSERVATION.head_circumference.v1.adl"
    path.write_text(src.replace("/events[at0010]/data[at0003]", "/events[at0010]/data[at0099]"))
    with pytest.raises(builder.AdlError, match="use_node"):
        builder.read_adl(path)


# --- C_DV_QUANTITY --------------------------------------------------------------------------------------
def test_quantity_intervals(builder):
    bmi = _xml(builder, _read(builder, "OBSERVATION.body_mass_index.v2"))
    (q,) = _children(_node(bmi, "at0004"), "C_DV_QUANTITY")
    assert _text(q, "o:property/o:code_string") == "349"
    units = q.findall("o:list", NS)
    assert [_text(u, "o:units") for u in units] == ["kg/m2", "[lb_av]/[in_i]2"]
    mag = units[0].find("o:magnitude", NS)
    assert [_text(mag, f"o:{k}") for k in ("lower_included", "upper_included", "lower", "upper")] == \
        ["true", "false", "0.0", "1000.0"]  # |0.0..<1000.0|
    assert (_text(units[0], "o:precision/o:lower"), _text(units[0], "o:precision/o:upper")) == ("1", "1")
    nodes = _xml(builder, _read(builder, "CLUSTER.lymph_node_metastases.v0"))
    (q,) = _children(_node(nodes, "at0009"), "C_DV_QUANTITY")
    mag = q.find("o:list/o:magnitude", NS)
    assert [_text(mag, f"o:{k}") for k in ("lower_included", "upper_unbounded", "lower")] == ["true", "true", "0.0"]


@pytest.mark.parametrize("text,want", [
    ("|0.0..<1000.0|", ("0.0", "1000.0", True, False)),
    ("|>0.0..<10|", ("0.0", "10", False, False)),
    ("|>=0|", ("0", None, True, True)),
    ("|>0|", ("0", None, False, True)),
    ("|<=5|", (None, "5", True, True)),
    ("|<5|", (None, "5", True, False)),
    ("|2..10|", ("2", "10", True, True)),
    ("|1|", ("1", "1", True, True)),
    ("|>=PT0S|", ("PT0S", None, True, True)),
    ("|0..*|", ("0", None, True, True)),
])
def test_parse_interval(adl, text, want):
    assert adl.parse_interval(text) == want


# --- specialisation -------------------------------------------------------------------------------------
def test_tnm_pathological_is_flattened_onto_tnm(builder, adl):
    tnm = _read(builder, "CLUSTER.tnm.v1")
    path = builder.ADL_DIR / "openEHR-EHR-CLUSTER.tnm-pathological.v1.adl"
    flat = builder.read_adl(path)
    raw = adl.parse_adl(path.read_text(encoding="utf-8-sig"), path.name)
    assert (flat.archetype_id, flat.parent_id, flat.concept) == \
        ("openEHR-EHR-CLUSTER.tnm-pathological.v1", "openEHR-EHR-CLUSTER.tnm.v1", "TNM pathological classification")
    ids = [o.node_id for o in flat.definition.attributes[0].children]
    assert ids[:6] == ["at0001", "at0002", "at0003.1", "at0004.1", "at0005.1", "at0006"]
    assert ids[-4:] == ["at0.1", "at0.2", "at0.3", "at0.8"]
    assert flat.definition.node_id == "at0000.1"
    # CKM publishes the child in full: the flat form is its own definition, checked against tnm.v1
    assert flat.definition == raw.definition
    for parent_code, child_code in (("at0003", "at0003.1"), ("at0031", "at0031.1")):
        assert flat.terms[parent_code] == tnm.terms[parent_code]
        assert adl.code_parent(child_code) == parent_code
    assert flat.terms["at0031.1"]["text"] == "Stage grouping"
    assert adl.code_parent("at0.1") is None and adl.code_parent("at0000.1") == "at0000"
    el = _xml(builder, flat, occurrences=(0, 1))
    assert _text(el, "o:node_id") == "at0000.1"
    codes = {td.get("code") for td in el.findall("o:term_definitions", NS)}
    assert {"at0000", "at0000.1", "at0003", "at0003.1", "at0.1", "at0.7"} <= codes


def _child_text(builder) -> str:
    return (builder.ADL_DIR / "openEHR-EHR-CLUSTER.tnm-pathological.v1.adl").read_text(encoding="utf-8-sig")


def _write_child(builder, tmp_path, text: str):
    (tmp_path / "openEHR-EHR-CLUSTER.tnm.v1.adl").write_text(
        (builder.ADL_DIR / "openEHR-EHR-CLUSTER.tnm.v1.adl").read_text(encoding="utf-8-sig"))
    path = tmp_path / "openEHR-EHR-CLUSTER.tnm-pathological.v1.adl"
    path.write_text(text)
    return path


def test_flattening_inherits_parent_nodes_the_child_leaves_out(builder, tmp_path):
    text = _child_text(builder)
    block = re.search(r"\t\t\tELEMENT\[at0002\].*?\n\t\t\t}\n", text, re.S).group(0)
    flat = builder.read_adl(_write_child(builder, tmp_path, text.replace(block, "")))
    ids = [o.node_id for o in flat.definition.attributes[0].children]
    assert ids[:3] == ["at0001", "at0002", "at0003.1"]  # inherited from tnm.v1, in its place


@pytest.mark.parametrize("old,new,message", [
    ("ELEMENT[at0003.1]", "ELEMENT[at0099.1]", "neither a node of the parent"),
    ("ELEMENT[at0003.1] occurrences matches {0..1}", "ELEMENT[at0003.1] occurrences matches {0..3}", "occurrences"),
    ("at0008,    -- RX", "at0099,    -- RX", "not in the parent's list"),
    ("CLUSTER[at0000.1]", "CLUSTER[at0001.1]", "is not the concept"),
])
def test_flattening_refuses_a_child_that_does_not_conform(builder, tmp_path, old, new, message):
    text = _child_text(builder)
    assert old in text
    with pytest.raises(builder.AdlError, match=message):
        builder.read_adl(_write_child(builder, tmp_path, text.replace(old, new, 1)))


def test_missing_parent_is_an_error(builder, tmp_path):
    path = tmp_path / "openEHR-EHR-CLUSTER.tnm-pathological.v1.adl"
    path.write_text(_child_text(builder))
    with pytest.raises(builder.AdlError, match="parent archetype"):
        builder.read_adl(path)


# --- the oncology template's tnm-pathological ------------------------------------------------------------
def test_oncology_ckm_variant_differs_only_in_tnm_pathological(builder):
    """--tnm-pathological ckm: the CKM archetype replaces our derivation; every other node is the same."""
    derived = ET.fromstring(builder.render("derived"))
    ckm = ET.fromstring(builder.render("ckm"))

    def roots(t):
        return {_text(r, "o:archetype_id/o:value"): r for r in _children(t, "C_ARCHETYPE_ROOT")}

    d, c = roots(derived), roots(ckm)
    assert d.keys() == c.keys()
    for aid in d:
        if aid not in ("openEHR-EHR-CLUSTER.tnm-pathological.v1", "openEHR-EHR-EVALUATION.problem_diagnosis.v1"):
            assert ET.tostring(d[aid]) == ET.tostring(c[aid]), aid
    tp = c["openEHR-EHR-CLUSTER.tnm-pathological.v1"]
    ids = [_text(e, "o:node_id") for e in tp.find("o:attributes", NS).findall("o:children", NS)]
    assert ids == ["at0001", "at0002", "at0003.1", "at0004.1", "at0005.1", "at0006", "at0007", "at0012", "at0016",
                   "at0021", "at0025.1", "at0026", "at0027", "at0028", "at0029", "at0030.1", "at0031.1", "at0032",
                   "at0.1", "at0.2", "at0.3", "at0.8"]


def test_sections_outside_adl_1_4_subset_are_refused(adl):
    with pytest.raises(adl.AdlError, match="invariant"):
        adl.parse_adl(SCALE_ADL.replace("ontology\n", "invariant\n\tscore: exists /items[at0001]\nontology\n"), "x")
    with pytest.raises(adl.AdlError, match="no 'definition' section"):
        adl.parse_adl(SCALE_ADL.replace("definition\n", "definitions\n"), "x")
    with pytest.raises(adl.AdlError, match="VARDT"):
        adl.parse_adl(SCALE_ADL.replace("openEHR-EHR-CLUSTER.conflictdesk", "openEHR-EHR-ELEMENT.conflictdesk"), "x")
