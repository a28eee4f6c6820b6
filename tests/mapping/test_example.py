"""sync.mapping.example: the example composition holds every node its template defines, inside the
template's constraints, deterministically; ``values`` chooses."""
import re

import pytest

from sync.mapping import rmpath, webtemplate
from sync.mapping.example import Ask, example_composition, variants
from sync.mapping.flat import web_template

from .test_no_silent_drop import TEMPLATES, every_event

_NAME = re.compile(r" and name/value='(?:[^'\\]|\\.)*'")


def _plain(path: str) -> str:
    return re.sub(r":\d+", "", _NAME.sub("", path))


def _value_nodes(node):
    alts = [c for c in node.children if c.rm_type.startswith("DV_") and c.aql_path.endswith("/value")]
    return [c for c in alts if c.rm_type != "DV_STATE"] or alts  # EHRbase reads no DV_STATE (example doc)


def _expected(wt) -> dict[str, list]:
    """Node-id path -> web-template nodes (name-sliced siblings share it) of every ELEMENT with a value
    type and every EVENT."""
    out: dict[str, list] = {}
    exact: set[str] = set()
    for n in wt.tree.walk():
        if n.node_id and ((n.rm_type == "ELEMENT" and _value_nodes(n)) or n.rm_type in webtemplate.EVENT_TYPES) \
                and n.aql_path not in exact:  # a second definition on the same path: the first one counts
            out.setdefault(_plain(n.aql_path), []).append(n)
            exact.add(n.aql_path)
    return out


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_the_examples_hold_every_element_and_event_of_the_template(name):
    opt = TEMPLATES[name]
    seen: dict[str, list[dict]] = {}
    for values in variants(opt):
        comp = example_composition(opt, values=lambda ask, v=values: every_event(ask) if ask.kind == "occurrences"
                                   else v(ask))
        for path, node in rmpath.walk(comp):
            seen.setdefault(_plain(path), []).append(node)
        ctx = comp.get("context") or {}
        for path, node in rmpath.walk(ctx, "/context"):
            seen.setdefault(_plain(path), []).append(node)
    expected = _expected(web_template(opt))
    assert sorted(set(expected) - set(seen)) == []
    for path, group in expected.items():
        got = seen[path]
        if any(n.rm_type == "EVENT" and n.max != 1 for n in group):
            assert {e["_type"] for e in got} >= {"POINT_EVENT", "INTERVAL_EVENT"}, path
        if group[0].rm_type == "ELEMENT":
            types = {v.rm_type.split("<")[0] for n in group for v in _value_nodes(n)}
            assert {e["value"]["_type"] for e in got} == types, path  # every value type, across variants
    for nodes in seen.values():
        for n in nodes:
            if n.get("_type") == "INTERVAL_EVENT":
                assert n["width"]["value"].startswith("P") and n["math_function"]["defining_code"]["code_string"]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_example_values_respect_the_template_constraints(name):
    opt = TEMPLATES[name]
    comp = example_composition(opt)
    nodes = {}
    for n in web_template(opt).tree.walk():
        for v in _value_nodes(n):
            nodes.setdefault(_plain(n.aql_path), []).append(v)
    checked = 0
    for path, el in rmpath.walk(comp):
        if el.get("_type") != "ELEMENT":
            continue
        value = el["value"]
        candidates = [v for v in nodes.get(_plain(path), []) if v.rm_type.split("<")[0] == value["_type"]]
        assert candidates, path
        listed = {s: [x for v in candidates for i in v.inputs if i.suffix == s for x in i.list]
                  for s in ("code", "unit")}
        if value["_type"] == "DV_CODED_TEXT" and all(any(i.suffix == "code" and i.list for i in v.inputs)
                                                     for v in candidates):
            assert value["defining_code"]["code_string"] in {x["value"] for x in listed["code"]}, path
            checked += 1
        if value["_type"] == "DV_QUANTITY" and listed["unit"]:
            units = [x for x in listed["unit"] if x["value"] == value["units"]]
            assert units, path
            ranges = [(x.get("validation") or {}).get("range") or {} for x in units]
            assert any(r.get("min", float("-inf")) <= value["magnitude"] <= r.get("max", float("inf")) for r in ranges)
            checked += 1
        if value["_type"] == "DV_ORDINAL":
            assert value["symbol"]["defining_code"]["code_string"] in \
                {x["value"] for v in candidates for i in v.inputs for x in i.list}, path
            checked += 1
    assert checked or not any(v.inputs and any(i.list for i in v.inputs) for vs in nodes.values() for v in vs)


def test_the_example_is_deterministic_and_values_choose():
    opt = TEMPLATES["conflictdesk_oncology.v1"]
    assert example_composition(opt) == example_composition(opt)
    asked: list[Ask] = []

    def every_interval(ask: Ask):
        asked.append(ask)
        if ask.kind == "event":
            return "INTERVAL_EVENT"
        if ask.kind == "null_flavour" and ask.path.endswith("/items[at0004]") and "blood_pressure" in ask.path:
            return "253"
        return ask.default

    comp = example_composition(opt, values=every_interval)
    events = [n for _, n in rmpath.walk(comp) if n.get("_type") in webtemplate.EVENT_TYPES]
    assert events and {e["_type"] for e in events} == {"INTERVAL_EVENT"}
    systolic = [n for p, n in rmpath.walk(comp) if "blood_pressure" in p and p.endswith("/items[at0004]")]
    assert systolic and all(s["null_flavour"]["defining_code"]["code_string"] == "253" and "value" not in s
                            for s in systolic)
    assert {a.kind for a in asked} >= {"event", "null_flavour", "magnitude", "unit", "code", "text", "datetime",
                                       "occurrences", "alternative", "duration", "math_function"}
    assert all(a.default in a.options for a in asked if a.options and a.kind != "null_flavour")
    assert example_composition(opt, archetypes=["openEHR-EHR-ACTION.procedure.v1"])["content"] and \
        {e["archetype_node_id"] for _, e in rmpath.entries(example_composition(
            opt, archetypes=["openEHR-EHR-ACTION.procedure.v1"]))} == {"openEHR-EHR-ACTION.procedure.v1"}


@pytest.mark.integration
def test_ehrbase_accepts_the_example_of_every_opt(ehrbase_urls):
    """The real EHRbase (site 1) takes every corpus OPT's and our oncology OPT's examples (every choice type),
    canonical JSON, as compositions of the template: valid RM, inside the templates' constraints."""
    import httpx  # only here: the other tests need no HTTP client

    from .test_no_silent_drop import OPTS
    base = ehrbase_urls[0]
    refused = {}
    with httpx.Client(timeout=180) as client:
        ehr = client.post(f"{base}/ehr", headers={"Prefer": "return=representation", "Accept": "application/json"})
        ehr.raise_for_status()
        ehr_id = ehr.json()["ehr_id"]["value"]
        for opt in OPTS:
            data = opt.read_bytes()
            up = client.post(f"{base}/definition/template/adl1.4", content=data,
                             headers={"Content-Type": "application/xml", "Prefer": "return=minimal"})
            assert up.status_code < 300 or up.status_code == 409, f"{opt.name}: {up.status_code}"  # 409: there
            for values in variants(opt):
                comp = example_composition(opt, values=values)
                comp.pop("uid")  # EHRbase gives the version uid
                r = client.post(f"{base}/ehr/{ehr_id}/composition", json=comp,
                                headers={"Content-Type": "application/json", "Prefer": "return=minimal"})
                if r.status_code not in (201, 204):
                    refused[opt.name] = f"{r.status_code} {r.text[:600]}"
    assert refused == {}
