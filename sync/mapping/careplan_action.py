"""ACTION.care_plan.v0: a careflow step of a care plan is the status of that plan's CarePlan, never a CarePlan.

The plan is its INSTRUCTION (care_plan_request.v0 -> CarePlan, status active: the model file); an ACTION
records what happened to it (commenced, suspended, completed...).  So the ACTION makes no resource of its
own (a second CarePlan would say there are two plans):

* forward (``forward``, called by convert.to_fhir): the ACTIONs acting on a plan are those whose
  ``instruction_details`` name its request and activity (same composition), else, without instruction
  details, the composition's only plan.  The latest (ACTION.time, then composition order) sets
  ``CarePlan.status`` by its ISM current state (``STATUS``: several states fold into one status), and the
  exact state, careflow step and transition go into the ``openehr-ism-transition`` extension, as the
  ACTION.procedure / ACTION.medication rows do; a plan completed or aborted ends then (``period.end`` =
  ACTION.time).  The ACTION entry itself (its time when no period end, description, reason, protocol,
  earlier steps) stays at the site: declared ``unmapped-entry`` (the round-trip guard does not look for
  it in what FHIR gives back).
* reverse (``reverse``, called by from_fhir): a CarePlan whose status (or ISM extension) says another
  state than the latest ACTION the composition already holds for its request, or, without one, another
  than the request alone says (active), gets a new ACTION.care_plan beside its request with that
  careflow step: the extension's while it still folds to the status (an edit of the status at the centre
  wins), else the status's default step (``DEFAULT``).  entered-in-error and unknown have no careflow
  step (a removal is the deletion path's business): reported, nothing written.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

from . import datatypes as dt
from . import rmpath
from .identifiers import parse_source_identifier
from .residue import URL as RESIDUE
from .results import Loss
from .terminology import SD_BASE

ARCHETYPE = "openEHR-EHR-ACTION.care_plan.v0"
REQUEST = "openEHR-EHR-INSTRUCTION.care_plan_request.v0"
ISM_EXT = SD_BASE + "openehr-ism-transition"
_PARTS = (("current_state", "currentState"), ("careflow_step", "careflowStep"), ("transition", "transition"))

# ISM current state (openEHR terminology) -> CarePlan.status (R4 request-status)
STATUS = {"524": "draft", "526": "draft", "529": "active", "245": "active", "527": "on-hold", "530": "on-hold",
          "528": "revoked", "531": "revoked", "533": "revoked", "532": "completed"}
STATE_NAMES = {"524": "initial", "526": "planned", "527": "postponed", "528": "cancelled", "529": "scheduled",
               "245": "active", "530": "suspended", "531": "aborted", "532": "completed", "533": "expired"}
# the archetype's careflow steps: at-code -> (current state, text)
STEPS = {"at0003": ("526", "Care plan Need Identified"), "at0008": ("526", "Care Plan Developed"),
         "at0034": ("527", "Care Plan Postponed"), "at0033": ("528", "Care Plan Cancelled"),
         "at0018": ("529", "Care Plan Scheduled"), "at0006": ("245", "Care Plan Commenced"),
         "at0020": ("245", "Care Plan Reviewed"), "at0035": ("530", "Care Plan Suspended"),
         "at0032": ("531", "Care Plan Aborted"), "at0010": ("531", "Care Plan Expired"),
         "at0013": ("532", "Care Plan Completed")}
# CarePlan.status -> the careflow step written when no ISM extension (still folding to it) says which
DEFAULT = {"draft": "at0008", "active": "at0006", "on-hold": "at0035", "revoked": "at0032", "completed": "at0013"}
ENDED = {"531", "532"}  # the plan ran and ended: ACTION.time is its period end
UNMAPPED = ("ACTION.care_plan: its careflow step is the status (openehr-ism-transition extension, period end) of the "
            "CarePlan made from the request it acts on; the entry itself stays at the site")


# ------------------------------------------------------------------ helpers
def _code(dv) -> str | None:
    return ((dv or {}).get("defining_code") or {}).get("code_string") if isinstance(dv, dict) else None


def _norm(path: str) -> str:
    """An openEHR path without name predicates (``[id,'name']`` -> ``[id]``) and leading slash."""
    return re.sub(r"\[([^\],]+),\s*'[^']*'\]", r"[\1]", path or "").strip("/")


def _when(value: str | None) -> datetime:
    try:
        t = datetime.fromisoformat(dt.datetime_to_fhir(value or "").replace("Z", "+00:00"))
        return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    except (ValueError, TypeError):
        return datetime.min.replace(tzinfo=timezone.utc)


def _acts_on(action: dict) -> str | None:
    """The plan path (request path + activity) an ACTION's instruction_details name, normalised."""
    det = action.get("instruction_details")
    if not isinstance(det, dict):
        return None
    path = (det.get("instruction_id") or {}).get("path")
    act = det.get("activity_id") or "activities[at0001]"
    return f"{_norm(path)}/{_norm(act)}" if path else None


def actions(composition: dict) -> list[tuple[int, str, dict]]:
    return [(n, p, e) for n, (p, e) in enumerate(rmpath.entries(composition))
            if e.get("archetype_node_id") == ARCHETYPE]


def _target(action: dict, plans: dict[str, object]):
    """The plan (value of ``plans``, keyed by normalised plan path) the ACTION acts on, or None."""
    named = _acts_on(action)
    if named is not None:
        return plans.get(named)
    return next(iter(plans.values())) if len(plans) == 1 else None


def _latest(acts: list[tuple[int, str, dict]]):
    return max(acts, key=lambda a: (_when((a[2].get("time") or {}).get("value")), a[0]))


# ------------------------------------------------------------------ openEHR -> FHIR
def forward(composition: dict, resources: list[dict], losses: list) -> None:
    """Set the status of each CarePlan made from this composition's requests from the ACTIONs acting on it."""
    found = actions(composition)
    if not found:
        return
    plans = {}
    for r in resources:
        src = parse_source_identifier(r) if r.get("resourceType") == "CarePlan" else None
        if src:
            plans[_norm(src[2])] = r
    acting: dict[int, tuple[dict, list]] = {}
    for n, path, action in found:
        losses.append(Loss(path, UNMAPPED, "unmapped-entry"))
        plan = _target(action, plans)
        state = _code((action.get("ism_transition") or {}).get("current_state"))
        if plan is None:
            losses.append(Loss(path + "/ism_transition", "acts on no care plan request of this composition: "
                               "no CarePlan status set", "unmapped-entry"))
        elif state not in STATUS:
            losses.append(Loss(path + "/ism_transition", "ISM state with no CarePlan status", "unmapped-entry"))
        else:
            acting.setdefault(id(plan), (plan, []))[1].append((n, path, action))
    for plan, acts in acting.values():
        _, _, action = _latest(acts)
        ism = action["ism_transition"]
        state = _code(ism["current_state"])
        plan["status"] = STATUS[state]
        ext = [{"url": url, "valueCoding": dt.coded_to_fhir(ism[key])["coding"][0]} for key, url in _PARTS
               if isinstance(ism.get(key), dict) and ism[key].get("defining_code")]
        plan["extension"] = [e for e in plan.get("extension") or [] if e.get("url") != ISM_EXT] + \
            [{"url": ISM_EXT, "extension": ext}]
        when = (action.get("time") or {}).get("value")
        if state in ENDED and when:
            plan.setdefault("period", {})["end"] = dt.datetime_to_fhir(when)


# ------------------------------------------------------------------ FHIR -> openEHR
def wanted_state(plan: dict) -> tuple[str, dict] | None:
    """(current state code, ISM_TRANSITION) a CarePlan's status asks for; None for no careflow step."""
    status = plan.get("status")
    if status not in DEFAULT:
        return None
    ext = next((e for e in plan.get("extension") or [] if e.get("url") == ISM_EXT), None)
    parts = {e.get("url"): e.get("valueCoding") for e in (ext or {}).get("extension") or []}
    cur = (parts.get("currentState") or {}).get("code")
    if cur in STATUS and STATUS[cur] == status:  # the exact step, while it still folds to the status
        ism = {"_type": "ISM_TRANSITION"}
        for key, url in _PARTS:
            if parts.get(url):
                ism[key] = dt.cc_to_dv({"coding": [parts[url]]})
        return cur, ism
    step = DEFAULT[status]
    cur, text = STEPS[step]
    return cur, {"_type": "ISM_TRANSITION",
                 "current_state": {"_type": "DV_CODED_TEXT", "value": STATE_NAMES[cur],
                                   "defining_code": dt.code_phrase("openehr", cur)},
                 "careflow_step": {"_type": "DV_CODED_TEXT", "value": text,
                                   "defining_code": dt.code_phrase("local", step)}}


def _said(ism: dict) -> tuple[str | None, str | None]:
    return _code(ism.get("current_state")), _code(ism.get("careflow_step"))


def new_action(plan: dict, ism: dict, *, language: str, request_path: str, activity: str, vo_uid: str | None) -> dict:
    cur = _code(ism["current_state"])
    when = (plan.get("period") or {}).get("end") if cur in ENDED else None
    when = when or (plan.get("meta") or {}).get("lastUpdated") or datetime.now(timezone.utc).isoformat()
    items = []
    if plan.get("title"):
        items.append({"_type": "ELEMENT", "archetype_node_id": "at0002",
                      "name": {"_type": "DV_TEXT", "value": "Care Plan Name"},
                      "value": {"_type": "DV_TEXT", "value": plan["title"]}})
    action = {"_type": "ACTION", "name": {"_type": "DV_TEXT", "value": "Care Plan"}, "archetype_node_id": ARCHETYPE,
              "archetype_details": {"_type": "ARCHETYPED",
                                    "archetype_id": {"_type": "ARCHETYPE_ID", "value": ARCHETYPE},
                                    "rm_version": "1.0.4"},
              "language": dt.code_phrase("ISO_639-1", language),
              "encoding": dt.code_phrase("IANA_character-sets", "UTF-8"), "subject": {"_type": "PARTY_SELF"},
              "time": {"_type": "DV_DATE_TIME", "value": when}, "ism_transition": ism,
              "description": {"_type": "ITEM_TREE", "archetype_node_id": "at0019",
                              "name": {"_type": "DV_TEXT", "value": "Tree"},
                              "items": items}}
    if vo_uid:
        action["instruction_details"] = {
            "_type": "INSTRUCTION_DETAILS", "activity_id": activity,
            "instruction_id": {"_type": "LOCATABLE_REF", "namespace": "local", "type": "INSTRUCTION",
                               "path": request_path,
                               "id": {"_type": "HIER_OBJECT_ID", "value": vo_uid}}}
    return action


def reverse(comp: dict, plans: list[tuple[dict, dict]], *, language: str, archetypes=None,
            based: bool = True) -> list[Loss]:
    """Write an ACTION.care_plan beside each request whose CarePlan's status another careflow step than the
    composition's latest ACTION for it (or the request alone: active) says.  ``plans``: (CarePlan, the
    INSTRUCTION entry rebuilt from it, as placed in ``comp``).  ``based``: ``comp`` is the site's composition
    (from_fhir's base); without it, a plan made from openEHR (our source identifier) gets no step: its status
    came from ACTIONs that stay at its site (map_back, which the round-trip guard compares, writes none either),
    reported instead."""
    losses: list[Loss] = []
    placed = {id(e): p for p, e in rmpath.entries(comp)}
    vo_uid = ((comp.get("uid") or {}).get("value") or "").split("::")[0] or None
    keyed = {}
    for plan, entry in plans:
        path = placed.get(id(entry))
        src = parse_source_identifier(plan)
        activity = _norm(src[2].rsplit("/", 1)[1]) if src and "/activities[" in src[2] else "activities[at0001]"
        if path is not None:
            keyed[f"{_norm(path)}/{activity}"] = (plan, path, activity)
    existing: dict[str, list] = {}
    for n, apath, action in actions(comp):
        hit = _target(action, {k: k for k in keyed})
        if hit:
            existing.setdefault(hit, []).append((n, apath, action))
    for key, (plan, path, activity) in keyed.items():
        where = f"CarePlan/{plan.get('id')}:status"
        if not based and parse_source_identifier(plan) and (plan.get("status") != "active" or _has_step(plan)):
            losses.append(Loss(where, "set by ACTION.care_plan steps kept at the site the plan came from; "
                               "no step written without that composition", "dropped"))
            continue
        want = wanted_state(plan)
        if want is None:
            losses.append(Loss(where, f"status {plan.get('status')!r} has no careflow step in ACTION.care_plan",
                               "dropped"))
            continue
        cur, ism = want
        if existing.get(key):
            if _said(_latest(existing[key])[2].get("ism_transition") or {}) == _said(ism):
                continue
        elif cur == "245" and _said(ism) == ("245", "at0006") and not _has_step(plan):
            continue  # active, no step named: the request alone says it
        if archetypes is not None and ARCHETYPE not in archetypes:
            losses.append(Loss(where, "the template holds no ACTION.care_plan.v0: the plan's status is not written",
                               "dropped"))
            continue
        comp.setdefault("content", []).append(new_action(plan, ism, language=language, request_path=path,
                                                         activity=activity, vo_uid=vo_uid))
    return losses


def _has_step(plan: dict) -> bool:
    return any(e.get("url") == ISM_EXT for e in plan.get("extension") or [])


def covered(loss: Loss, plans: list[dict], said: list[Loss]) -> bool:
    """A from_fhir loss of a CarePlan element the ACTION carries (status, the ISM extension, a period end),
    for a plan whose status ``reverse`` wrote (``said``: what it could not)."""
    if loss.path in {x.path for x in said}:
        return True  # said more exactly by reverse
    ids = {f"CarePlan/{p.get('id')}": p for p in plans if p.get("status") in DEFAULT}
    for x in said:
        ids.pop(x.path.split(":")[0], None)
    head, _, element = loss.path.partition(":")
    if head not in ids:
        return False
    if element.startswith("extension"):  # the ISM extension the ACTION carries, when it is the plan's only one
        return all(e.get("url") in (ISM_EXT, RESIDUE) for e in ids[head].get("extension") or [])
    return element == "status" or element.startswith("period.end")
