"""Public entry points: whole compositions to FHIR resources and back.

Finds mapped entries by archetype id anywhere in the composition (SECTIONs
included), runs the engine per entry, stamps identity, and closes each unit
with the residue check so that the round trip is exact and every piece of
data that only survives in our extension is reported as a loss.
"""
from __future__ import annotations

import re

from . import composition as composition_level
from . import careplan_action
from . import datatypes as dt
from . import engine, feeder, fhirmodel, fhirpath, profile_units, residue, rmpath
from .errors import MalformedInput, MappingError
from .fidelity import clinical_content, same_content
from .identifiers import build_source_identifier, parse_source_identifier, stamp
from .lookup import archetype_of, slot_rule
from .results import Loss, MappingResult
from .runtime import Unit
from .spec import Spec, registry


# ------------------------------------------------------------------ openEHR -> FHIR
def _uid(composition: dict) -> str:
    uid = (composition.get("uid") or {}).get("value")
    if not uid:
        raise MalformedInput("composition has no uid", path="/uid", rule="composition.uid")
    return uid


def _restrict(entry: dict, rel: str, keep: tuple[str, ...] = ()) -> dict:
    """Read-only view of the entry keeping only the event at ``rel`` (the entry itself when rel is
    ''), plus the split list's siblings at the paths ``keep`` (those no group maps: they travel in
    this group's residue): only the containers on the path to the event are copied, every other node
    is shared with the source, so callers must not mutate it (residue.diff copies what it keeps)."""
    if not rel:
        return entry
    steps = rmpath.parse(rel)
    event = rmpath.find(entry, steps)[0]
    kept = [n for k in keep for n in rmpath.find(entry, rmpath.parse(k))]
    view = dict(entry)
    cur = view
    for st in steps[:-1]:  # e.g. data[at0001]: copy HISTORY so its events list can be replaced
        child = rmpath.find(cur, [st])[0]
        twin = dict(child)
        attr = cur[st.attr]
        cur[st.attr] = [twin if x is child else x for x in attr] if isinstance(attr, list) else twin
        cur = twin
    cur[steps[-1].attr] = [x for x in rmpath.children(cur, steps[-1].attr) if x is event or any(x is k for k in kept)]
    return view


def _unsplit(entry: dict, rels: list[str]) -> tuple[str, ...]:
    """Paths of the nodes in the split list (HISTORY.events, INSTRUCTION.activities) that no group maps:
    an INSTRUCTION's activity with another node id than the file's.  They must not vanish: the first
    group's residue carries them whole (an OBSERVATION's events all split: engine.split_steps)."""
    out: list[str] = []
    for parent_rel, attr in {(r.rsplit("/", 1)[0], rmpath.parse(r)[-1].attr) for r in rels if r}:
        parent = rmpath.find(entry, rmpath.parse(parent_rel)) if parent_rel else [entry]
        seen: dict[str, int] = {}
        for x in rmpath.children(parent[0], attr) if parent else []:
            if not rmpath.is_locatable(x):
                continue
            k = seen.get(x["archetype_node_id"], 0)
            seen[x["archetype_node_id"]] = k + 1
            sib = f"{parent_rel}/{attr}[{x['archetype_node_id']}]" + (f":{k}" if k else "")
            if sib not in rels:
                out.append(sib)
    return tuple(sorted(out))


def _noindex(rel: str) -> str:
    return re.sub(r":\d+$", "", rel)


def patient_element(resource_type: str) -> str | None:
    """Where a resource names its patient: ``subject`` (Observation, Condition...), ``patient`` (EpisodeOfCare,
    Immunization, FamilyMemberHistory, Consent), or nowhere (Medication)."""
    names = fhirmodel.fields(resource_type)
    return next((n for n in ("subject", "patient") if n in names), None)


def to_fhir(composition: dict, *, site: str, ehr_id: str, patient_ref: str) -> MappingResult:
    """Map every entry whose archetype has a model mapping to FHIR R4 resources.

    One resource group per event (history events split); each resource carries the identifier
    ``urn:conflictdesk:source|{site}|{versioned object uid}|{node path}`` and a deterministic id.
    ``losses`` lists unmapped entries and data kept only in our residue extension."""
    if not isinstance(composition, dict) or composition.get("_type", "COMPOSITION") != "COMPOSITION" \
            or "content" not in composition:
        raise MalformedInput("not a canonical COMPOSITION", path="/", rule="composition.canonical")
    uid = _uid(composition)
    vo_uid = uid.split("::")[0]
    lang = (composition.get("language") or {}).get("code_string", "en")
    result = MappingResult()
    specs = registry()

    def identify(res: dict, path: str) -> None:
        stamp(res, build_source_identifier(site, vo_uid, path))

    unchanged: set[str] = set()  # FHIR-born resources the site has not changed (a document's sections need them)

    for path, entry in rmpath.entries(composition):
        if entry.get("archetype_node_id") == careplan_action.ARCHETYPE:
            continue  # a careflow step of a plan: that plan's CarePlan status (careplan_action.forward, below)
        spec = specs.get(entry.get("archetype_node_id"))
        if spec is None or spec.is_cluster:
            result.losses.append(Loss(path, f"no model mapping for {entry.get('archetype_node_id')}; "
                                            "entry not converted", "unmapped-entry"))
            continue
        try:
            unit, groups = engine.run_forward(spec, entry, node_path=path, identify=identify, language=lang,
                                              composition=composition)
        except MappingError as exc:
            exc.composition_uid = exc.composition_uid or uid
            raise
        for _, group in groups:
            for res in group:
                who = patient_element(res["resourceType"])
                if who:
                    res[who] = {"reference": patient_ref}
        if "feeder_audit" in entry:  # born in FHIR: what FHIR sent beyond the mapping, while it still applies
            made = [(r, parse_source_identifier(r)[2][len(path):]) for _, g in groups for r in g]
            unchanged |= feeder.unchanged(entry, made)
            result.losses.extend(Loss(p, "FHIR-born detail not given back: the site changed what it describes",
                                      "stale") for p in feeder.restore(entry, made))
        unsplit = _unsplit(entry, [rel for rel, group in groups if group])
        for rel, group in groups:
            if not group:
                continue
            _close_unit(spec, entry, path, rel, group, unit, lang, result.losses, uid, unsplit)
            unsplit = ()  # the first group carries them
            for res in group:
                profile_units.fit(res)
            result.resources.extend(group)
    careplan_action.forward(composition, result.resources, result.losses)
    # COMPOSITION-level rows (root archetype with a model file): Encounter + Composition, appended last
    level, level_losses = composition_level.forward(composition, result.resources, identify=identify,
                                                    patient_ref=patient_ref, language=lang, uid=uid,
                                                    unchanged=unchanged)
    result.resources.extend(level)
    result.losses.extend(level_losses)
    seen = set()
    result.losses = [x for x in result.losses if not (x.path in seen or seen.add(x.path))]
    return result


def _close_unit(spec, entry, path, rel, group, unit, lang, losses, uid, unsplit=()) -> None:
    original = _restrict(entry, rel, unsplit)
    event_node = rmpath.parse(rel)[-1].node if rel else None
    rebuilt = rebuild_group(spec, group, event_node, lang)
    norm_original = clinical_content(original)  # normalised once: for the diff and the final check
    items = residue.diff(original, rebuilt, norm_original=norm_original)
    owners = []
    for res in group:
        abs_path = unit.paths.get(id(res), path)
        owners.append((_noindex(rel) + abs_path[len(path) + len(rel):] if abs_path.startswith(path + rel)
                       else "", res))
    owners.sort(key=lambda o: -len(o[0]))
    by_owner: dict[int, list] = {}
    for it in items:
        owner = next((r for p, r in owners if p and (it.path == p or it.path.startswith(p + "/"))), group[0])
        by_owner.setdefault(id(owner), []).append(it)
    for res in group:
        if by_owner.get(id(res)):
            res.setdefault("extension", []).extend(residue.encode(by_owner[id(res)]))
    # Self-check: the residue as written into the resources (encoded, then decoded back) must restore
    # the entry on top of what the standard elements give.  The reverse mapping does not read our
    # residue extension (no rule matches its URL: checked by tests/mapping), so what they give is
    # ``rebuilt`` already: apply the decoded residue to it instead of mapping the group back again.
    residue.apply(rebuilt, [it for r in group for it in residue.decode(r)])
    if not same_content(norm_original, clinical_content(rebuilt)):
        raise MappingError("residue does not restore the entry", composition_uid=uid, path=path + rel,
                           rule=spec.name)
    losses.extend(_losses_for(path, rel, items))


def _losses_for(path: str, rel: str, items) -> list[Loss]:
    out = []
    for it in items:
        where = path + rel + it.path[len(_noindex(rel)):] if rel and it.path.startswith(_noindex(rel)) \
            else path + it.path
        if it.attr == "*":
            leaves = [""] if it.value.get("_type") == "ELEMENT" else \
                [p for p, n in rmpath.walk(it.value) if n.get("_type") == "ELEMENT"]
            for leaf in leaves:
                out.append(Loss(where + leaf, "no standard FHIR element in the mapping; kept in openehr-residue "
                                              "extension"))
        elif it.attr in ("value", "null_flavour"):
            v = it.value.get("value") if isinstance(it.value, dict) else None
            why = "time without zone: FHIR requires one, 'Z' assumed; original kept in openehr-residue" \
                if isinstance(v, str) and dt.is_naive_time(v) else \
                "standard FHIR value differs from the source form (code, unit or rubric); exact value kept in openehr-residue extension"
            out.append(Loss(f"{where}/{it.attr}", why))
        elif it.attr in ("time", "origin") and isinstance(it.value, dict) and dt.is_naive_time(
                str(it.value.get("value", ""))):
            out.append(Loss(f"{where}/{it.attr}", "time without zone: FHIR requires one, 'Z' assumed; original "
                                                 "kept in openehr-residue"))
    return out


# ------------------------------------------------------------------ FHIR -> openEHR (one group)
def rebuild_group(spec: Spec, group: list[dict], event_node: str | None, lang: str, *,
                  apply_residue: bool = False, stale: list | None = None) -> dict:
    """Rebuild the single-event entry that ``group`` (primary first, or lone slot resources) came from."""
    unit = Unit()
    for r in group:
        unit.by_ref[f"{r.get('resourceType')}/{r.get('id')}"] = r
        unit.by_ref[f"urn:uuid:{r.get('id')}"] = r  # bundle-internal references
    primary = next((r for r in group if archetype_of(r) == spec.archetype), None)
    if primary is None:
        primary = {"resourceType": spec.resource}
        given = next((c["language"] for c in group if c.get("language")), None)  # not `lang`: the entry's default
        if given:
            primary["language"] = given  # the resources' language is the entry's (a collapsed lab report's)
        kinds = {id(c): archetype_of(c) for c in group}
        for child in group:
            refs = {f"{child['resourceType']}/{child.get('id')}", f"urn:uuid:{child.get('id')}"}
            if any(refs & set(_ref_values(c)) for c in group if c is not child and kinds[id(c)] == kinds[id(child)]):
                continue  # a member of another slot resource of its kind (T/N/M of a stage group), not a slot filler
            # (one another kind references still fills its own slot: the Specimen an analyte names)
            cs = registry().get(kinds[id(child)]) if kinds[id(child)] else None
            rule = slot_rule(spec, cs) if cs else None
            if rule:
                fhirpath.put(primary, spec.resource, rule.fhir.replace("$resource", "").lstrip("."),
                             {"reference": f"{child['resourceType']}/{child.get('id')}"})
    else:
        primary = _with_pointing_slots(spec, primary, group)
    entry = engine.run_reverse(spec, primary, unit, event_node=event_node, language=lang)
    _history_origin(entry)
    if apply_residue:
        items = [it for r in group for it in residue.decode(r)]
        bad = residue.apply(entry, items)
        if stale is not None:
            stale.extend(bad)
    return entry


def _history_origin(entry: dict) -> None:
    """HISTORY.origin is mandatory (RM 1..1; EHRbase refuses an entry without it): when no rule gave it (a lab
    result sent alone: the report whose time gives it was not sent), the first event's time, as the eventTime
    hook gives it.  An origin of another time travels in the residue, which is applied after this."""
    hist = entry.get("data")
    if isinstance(hist, dict) and hist.get("_type") == "HISTORY" and not hist.get("origin"):
        times = [e["time"] for e in hist.get("events") or [] if isinstance(e, dict) and isinstance(e.get("time"), dict)]
        if times and times[0].get("value"):
            hist["origin"] = {"_type": "DV_DATE_TIME", "value": times[0]["value"]}


def _with_pointing_slots(spec: Spec, primary: dict, group: list[dict]) -> dict:
    """The primary, plus a slot reference to every group member that names the primary but that no
    member references (MII: a TNM Observation's focus is its Condition, the Condition has no stage):
    a copy when one is added, the sender's resource is never changed."""
    me = {f"{primary['resourceType']}/{primary.get('id')}", f"urn:uuid:{primary.get('id')}"}
    named = {x for c in group for x in _ref_values(c)}
    out = primary
    for child in group:
        refs = {f"{child['resourceType']}/{child.get('id')}", f"urn:uuid:{child.get('id')}"}
        if child is primary or refs & named or not me & set(_ref_values(child)):
            continue
        cs = registry().get(archetype_of(child) or "")
        rule = slot_rule(spec, cs) if cs else None
        if rule:
            out = rmpath.jcopy(out) if out is primary else out
            fhirpath.put(out, spec.resource, rule.fhir.replace("$resource", "").lstrip("."),
                         {"reference": f"{child['resourceType']}/{child.get('id')}"})
    return out


def _ref_values(obj) -> list[str]:
    if isinstance(obj, dict):
        return [v for k, v in obj.items() if k == "reference" and isinstance(v, str)] + \
            [x for k, v in obj.items() if k != "reference" for x in _ref_values(v)]
    return [x for v in obj for x in _ref_values(v)] if isinstance(obj, list) else []
