"""What a data steward needs to fix a dead letter: the rule in plain words, what to do, and the offending value.

The offending value is read from the letter's payload at the letter's path,
here, for the desk page only (the roles that may see the payload): the engine
never puts it in a log line, an error text or an e-mail.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from sync.models import DeadLetter

_RESOLVE = ("Then re-drive this letter (or, for many, the list filtered by rule and site: one action).")
_NEW_VERSION = ("Ask the site to correct it in a new version of the composition; the new version syncs by itself. "
                "Then discard this letter, naming the corrected version.")

# rule (its start) -> (what the rule says, what to do). The longest matching start wins.
RULES = {
    "rm.dv_quantity.units.ucum": (
        "The unit is not a UCUM code, and no units_system says it belongs to another system. A hand-typed unit "
        "(\"..mol/l\" with the micro sign lost) can be a 1000-fold error, so a person decides what was meant.",
        "Find the intended unit (UCUM: umol/L, mmol/L, mg/dL, Cel, mm[Hg], /min). " + _NEW_VERSION),
    "rm.dv_quantity.units": ("A quantity has no unit, a blank one, or one longer than 100 characters.",
                             "Add the quantity's unit. " + _NEW_VERSION),
    "rm.dv_quantity.magnitude": ("A quantity's value is not a number.", "Correct the value. " + _NEW_VERSION),
    "rm.dv_date": ("A date or time is not in ISO 8601 form (for example 2026-12-06T10:42:00+01:00).",
                   "Correct the date. " + _NEW_VERSION),
    "rm.element": ("A data element has both a value and a reason for having none (null flavour), or neither.",
                   "Keep either the value or the null flavour. " + _NEW_VERSION),
    "rm.dv_text": ("A text value is not text.", _NEW_VERSION),
    "rm.locatable": ("A node has no archetype node id or no name, which every openEHR node needs.", _NEW_VERSION),
    "rm.type": ("A node's RM type is not a type name.", _NEW_VERSION),
    "payload": ("The payload is not well-formed (not JSON, too deep, a NUL character, a number that is not "
                "finite, an over-long text).",
                "The source system sent a broken body: report it to its administrator with this letter's number. "
                + _RESOLVE),
    "composition": ("The composition is not canonical openEHR JSON, names no template, or names another "
                    "template than the record's.", "Check with the site which template the record uses. " + _RESOLVE),
    "template.": ("The composition has a node its template does not define: the site's template and the "
                  "composition disagree.",
                  "Ask the site whether its template changed; upload the template version the composition was "
                  "written with, or correct the composition in a new version. " + _RESOLVE),
    "site.template": ("The site does not have the composition's template.",
                      "Upload the template to the site's CDR. " + _RESOLVE),
    "site.template_ids": ("The site accepts no template for writes from the centre.",
                          "An admin lists the templates the site accepts (Sites & people, or the API). " + _RESOLVE),
    "registry": ("No mapping exists yet for this kind of entry, so nothing of it can be written centrally.",
                 "Ask for a mapping row for this archetype (sync/mapping/README.md says how one is added). "
                 "Re-drive after it is deployed."),
    "fhir.r4": ("The FHIR resource is not valid FHIR R4 at the path shown.",
                "If the source value is wrong, correct it at the source (a new version syncs by itself, then "
                "discard this letter); if the mapping is wrong, report it with this letter's number and re-drive "
                "after the fix."),
    "reverse.delete": ("A central deletion: deletions are not propagated to the sites yet.",
                       "If the deletion is clinically right, delete the composition at the site by hand, then "
                       "discard this letter."),
    "resolution.content": ("A clinician's decision reached the engine incomplete.",
                           "Open the conflict again and decide anew; discard this letter."),
    "replay.deterministic": ("Running the mapping again gave another result than the one checkpointed.",
                             "Report it to the engine's maintainers with this letter's number; re-drive after the "
                             "fix."),
}
# cause -> (what happened, what to do), when the rule says nothing more.
CAUSES = {
    DeadLetter.Cause.TRANSIENT_EXHAUSTED: (
        "The destination did not answer (or answered 'try later') through all 7 attempts, 1 to 32 s apart.",
        "Check the health page; once the server answers, re-drive. After an outage, re-drive them all at once: "
        "filter the list by site and time, then 'Re-drive'."),
    DeadLetter.Cause.FIDELITY: (
        "The mapping would lose or change information: the source, the mapped resources and the mapping back "
        "disagree (shown below).",
        "Report it to the mapping's maintainers with this letter's number. Re-drive after the fix; discard only "
        "if the loss is accepted."),
    DeadLetter.Cause.CRASH_LOOP: (
        "A worker died or hung in the same step on every claim of this run.",
        "Look up the run's id in the worker logs (ids only are logged). Re-drive once the cause is fixed."),
    DeadLetter.Cause.REJECTED: (
        "The destination refused the write (its answer is in the error detail).",
        "Read the server's answer; fix the value or the server's configuration, then re-drive."),
    DeadLetter.Cause.UNMAPPED: RULES["registry"],
    DeadLetter.Cause.VALIDATION: ("The data breaks a rule the engine checks before writing anything.",
                                  _NEW_VERSION),
}


@dataclass(frozen=True)
class Explanation:
    what: str
    todo: str


@dataclass(frozen=True)
class Offending:
    path: str
    where: str  # the name of the element holding it ("Glucose"), when the payload names one
    value: str  # the offending value as JSON
    node: str  # the enclosing data value as JSON (the unit with its magnitude), when it says more


def explain(letter: DeadLetter) -> Explanation:
    rule = letter.rule or ""
    best = max((start for start in RULES if rule.startswith(start)), key=len, default=None)
    what, todo = RULES[best] if best else CAUSES.get(letter.cause, ("", ""))
    return Explanation(what, todo)


def offending(letter: DeadLetter) -> Offending | None:
    """The value at the letter's path in its payload, or None when the path does not lead into it."""
    if letter.payload is None or not letter.path or letter.path == "/":
        return None
    trail = walk(letter.payload, letter.path)
    if not trail:
        return None
    value = trail[-1]
    parent = next((n for n in reversed(trail[:-1]) if isinstance(n, dict) and "_type" in n
                   and str(n.get("_type", "")).startswith("DV_")), None)
    named = next((n for n in reversed(trail) if isinstance(n, dict) and isinstance(n.get("name"), dict)
                  and "value" in n["name"]), None)
    return Offending(path=letter.path, where=str(named["name"]["value"]) if named else "",
                     value=_json(value), node=_json(parent) if parent is not None and parent is not value else "")


_SEGMENT = re.compile(r"^([A-Za-z_][\w]*)?(?:\[([^\]]+)\])?(?::(\d+))?$")


def walk(payload, path: str) -> list:
    """The nodes from the payload down to ``path``: '/a/0/b' (pointer), '/a[at0001]/b[0]' (archetype
    path, ':n' the n-th of a repeated node), or 'Observation.valueQuantity.value' (FHIR)."""
    if not path.startswith("/"):
        return _walk_fhir(payload, path)
    node, trail = payload, []
    for segment in [s for s in path.split("/") if s]:
        node = _step(node, segment)
        if node is _MISSING:
            return []
        trail.append(node)
    return trail


_MISSING = object()


def _step(node, segment: str):
    if isinstance(node, list) and segment.isdigit():
        return node[int(segment)] if int(segment) < len(node) else _MISSING
    match = _SEGMENT.match(segment)
    if not match or not isinstance(node, dict):
        return _MISSING
    attr, selector, nth = match.groups()
    child = node.get(attr, _MISSING) if attr else node
    if child is _MISSING or selector is None:
        return child
    items = child if isinstance(child, list) else [child]
    if selector.isdigit():
        return items[int(selector)] if int(selector) < len(items) else _MISSING
    found = [i for i in items if isinstance(i, dict) and i.get("archetype_node_id") == selector]
    n = int(nth or 0)
    return found[n] if n < len(found) else _MISSING


def _walk_fhir(payload, path: str) -> list:
    parts = path.split(".")
    node = payload
    if isinstance(node, dict) and parts and parts[0] == node.get("resourceType"):
        parts = parts[1:]
    trail = []
    for part in parts:
        match = re.match(r"^(\w+)(?:\[(\d+)\])?$", part)
        if not match or not isinstance(node, dict) or match.group(1) not in node:
            return []
        node = node[match.group(1)]
        if isinstance(node, list):
            index = int(match.group(2) or 0)
            if index >= len(node):
                return []
            node = node[index]
        trail.append(node)
    return trail


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False, indent=None if not isinstance(value, (dict, list)) else 1)[:2000]
