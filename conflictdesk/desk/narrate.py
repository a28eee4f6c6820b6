"""The audit trail in words for an auditor: who (people by name, machines by role) did what, one sentence each.

Pure over the stored events (plus the names of the desk's users): nothing
here reads clinical content, and the hashes and raw actors stay on the page
behind a disclosure, exactly as stored.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.auth import get_user_model

from sync.identity import BACKFILL_PREFIX

CHOICES = {"keep_site": "keep the site version", "keep_central": "keep the central version",
           "merge": "merge field by field"}
_STEPS = {
    "detect": "detected", "validate_source": "checked against its template", "transform": "mapped",
    "validate_target": "checked as valid", "check_conflict": "compared with the other side", "write": "written",
    "audit": "read back", "acknowledge": "acknowledged",
}


def people(events) -> dict[str, str]:
    """Login e-mail -> the person's name (staff accounts; a person without a name keeps the e-mail)."""
    emails = {e.actor for e in events if e.actor_kind == "user" and "@" in e.actor}
    users = get_user_model().objects.filter(email__in=emails)
    return {u.email: (u.get_full_name() or u.email) for u in users}


def actor(event, names: dict[str, str]) -> str:
    """A person by name; a machine by its role (the host and pid stay in the event's detail)."""
    who = event.actor or ""
    if who in names:
        return names[who]
    if who.startswith("cli:"):
        return f"command line on {who.split('@', 1)[-1].split(':')[0]}"
    if who.startswith("worker@"):
        if event.action.startswith("audit."):
            return "audit service"
        if event.action.startswith(("sync.poll", "sync.detect_", "sync.check_deletions", "sync.sweep")):
            return "change detection"
        return "sync engine"
    if who == "anonymous":
        return "someone not signed in"
    return who


def _version(event) -> str:
    version = event.source_version or ""
    if "::" in version:
        return f"v{version.rsplit('::', 1)[-1]}"
    return f"v{version}" if version else ""


def subject(event) -> str:
    """'site1 composition v3', 'central Observation/123 v2': what a run moved, by ids only."""
    source = event.source or ""
    if source.startswith("site:"):
        return " ".join(p for p in (source[5:], "composition", _version(event)) if p)
    if source == "central":
        return " ".join(p for p in ("central", event.source_object, _version(event)) if p)
    if source.startswith(BACKFILL_PREFIX):  # an existing version delivered to a registration linked late
        return " ".join(p for p in ("central", event.source_object, _version(event), "(backfill)") if p)
    return "the record"


def _where(label: str) -> str:
    return label[5:] if label.startswith("site:") else (label or "the destination")


def _count(objects: str) -> int:
    return len([o for o in (objects or "").split(",") if o])


def sentence(event, names: dict[str, str] | None = None) -> str:
    """One plain sentence for one event."""
    names = names or {}
    d, who, action, outcome = event.detail or {}, actor(event, names), event.action, event.outcome
    if action.startswith("sync.") and action[5:] in _STEPS:
        return _step_sentence(event, action[5:], outcome, d)
    words = {
        "desk.conflict.decide": lambda: f"{who} decided conflict #{d.get('conflict_id')}: "
                                        f"{CHOICES.get(d.get('choice'), d.get('choice'))}"
                                        + (f" ({d.get('from_site')} of {d.get('fields')} fields from the site)"
                                           if d.get("choice") == "merge" else ""),
        "sync.resolution.start": lambda: f"decision #{d.get('resolution_id')} on conflict #{d.get('conflict_id')} "
                                         "queued to be written to both sides",
        "sync.redrive": lambda: f"{who} re-drove dead letter #{d.get('dead_letter_id')} ({d.get('cause')})",
        "sync.redrive.bulk": lambda: f"{who} re-drove {d.get('count')} dead letters in one go"
                                     + (f" ({_filter_words(d.get('filter') or {})})" if d.get("filter") else ""),
        "desk.deadletter.discard": lambda: f"{who} discarded dead letter #{d.get('dead_letter_id')} "
                                           "(the reason is kept on the letter)",
        "desk.login": lambda: f"{who} signed in" if outcome == "ok" else "a sign-in failed",
        "desk.logout": lambda: f"{who} signed out",
        "desk.refused": lambda: f"{who} was refused: needs {d.get('permission')} ({d.get('url_name') or '-'})",
        "desk.invite": lambda: f"{who} invited a new {d.get('role')}",
        "source.viewed": lambda: f"{who} viewed the source of {event.destination_object or event.source_object or 'a resource'}",
        "site.create": lambda: f"{who} added site {d.get('site')}",
        "site.update": lambda: f"{who} changed site {d.get('site')} ({', '.join(d.get('fields') or [])})",
        "site.delete": lambda: f"{who} deleted site {d.get('site')}",
        "site.fidelity_guard": lambda: f"{who} set the fidelity guard from {d.get('from')} to {d.get('to')}",
        "api.token.issue": lambda: f"{who} was issued an API token",
        "api.token.show": lambda: f"{who} was shown their API token",
        "api.trigger.site": lambda: f"{who} asked for a poll of a site",
        "api.trigger.composition": lambda: f"{who} asked for one composition to be synced",
        "api.trigger.patient": lambda: f"{who} asked for one patient's records to be synced",
        "audit.anchor_heads": lambda: "chain heads anchored on the central server",
        "audit.verify": lambda: (f"every chain verified ({d.get('chains')} chains)" if outcome == "ok"
                                 else f"verification found {d.get('broken_chains')} broken chain(s)"),
        "guard.checked": lambda: f"fidelity guard: {outcome}",
    }
    if action in words:
        return words[action]()
    return f"{who}: {action} {outcome}"


def _step_sentence(event, step: str, outcome: str, d: dict) -> str:
    what = subject(event)
    if outcome == "transient":
        return f"{_STEPS[step]} failed for now (attempt {d.get('attempt')}, {d.get('error_class')}); will retry"
    if outcome == "dead_letter":
        return f"{what} stopped at {step.replace('_', ' ')}: dead letter ({d.get('cause')})"
    if outcome == "stale":
        return "the destination moved during the write; checked again"
    if step == "detect":
        if d.get("deleted") or d.get("removal"):  # a deletion (or entered-in-error) travels like any change
            return f"{what} detected: {'entered-in-error' if d.get('removal') == 'modification' else 'deleted'}"
        return f"{what} detected"
    if step == "transform":
        n = d.get("resources")
        return f"mapped to {n} FHIR resource{'s' if n != 1 else ''}" if n is not None else "mapped"
    if step == "check_conflict":
        if outcome == "conflict" and d.get("deleted_on"):
            return (f"conflict: deleted {_DELETED_ON[d['deleted_on']]}, changed on the other side; "
                    "waiting for a clinician")
        return ("conflict: both sides changed; waiting for a clinician" if outcome == "conflict"
                else "no conflict with the other side")
    if step == "write":
        target = _where(event.destination)
        if (event.destination or "").startswith("site:"):
            version = (event.destination_version or "").rsplit("::", 1)[-1]
            if d.get("deleted"):
                return f"{what}: composition deleted at {target}" + (f" (v{version})" if version else "")
            return f"{what} written to {target} as a composition" + (f" (v{version})" if version else "")
        n, retired = _count(event.destination_object), len(d.get("entered_in_error") or [])
        return (f"{what} written to {target}" + (f" as {n} resource{'s' if n != 1 else ''}" if n else "")
                + (f"; {retired} resource{'s' if retired != 1 else ''} marked entered-in-error" if retired else ""))
    if step == "audit":
        return "read back identical" if outcome == "ok" else "read back DIFFERENT from what was written"
    if step == "acknowledge":
        return "acknowledged: both sides agree, new base recorded"
    return f"{what} {_STEPS[step]}" + ("" if outcome == "ok" else f" ({outcome})")


_DELETED_ON = {"site": "at the site", "central": "centrally"}


def _filter_words(f: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in f.items())


@dataclass
class Group:
    """The events of one run (a sync, or a decision and the run writing it), or one event on its own."""

    run_id: int | None
    events: list = field(default_factory=list)
    headline: str = ""
    outcome: str = ""


def grouped(events, names: dict[str, str]) -> list[Group]:
    """Events (already limited to the page's groups) as groups, newest group first, events oldest first."""
    groups: dict = {}
    for e in sorted(events, key=lambda e: (e.occurred_at, e.pk)):
        e.says, e.who = sentence(e, names), actor(e, names)
        key = e.run_id if e.run_id is not None else -e.pk
        groups.setdefault(key, Group(run_id=e.run_id)).events.append(e)
    out = sorted(groups.values(), key=lambda g: (g.events[-1].occurred_at, g.events[-1].pk), reverse=True)
    for g in out:
        g.headline, g.outcome = headline(g.events, names), g.events[-1].outcome
    return out


def headline(events, names: dict[str, str]) -> str:
    """The run in one sentence: 'site1 composition v3 written to central as 4 resources, read back identical'."""
    by_action = {e.action: e for e in events}
    decide = by_action.get("desk.conflict.decide")
    write, audit = by_action.get("sync.write"), by_action.get("sync.audit")
    last = events[-1]
    parts = []
    if decide:
        parts.append(sentence(decide, names))
    if write and write.outcome == "ok":
        parts.append(sentence(write, names))
        if audit:
            parts.append(sentence(audit, names))
    elif last.outcome == "conflict" and (last.detail or {}).get("deleted_on"):
        parts.append(f"{subject(events[0])} deleted {_DELETED_ON[last.detail['deleted_on']]} and changed on the other "
                     "side: waiting for a clinician")
    elif last.outcome == "conflict":
        parts.append(f"{subject(events[0])} changed on both sides: waiting for a clinician")
    elif last.outcome == "dead_letter":
        parts.append(sentence(last, names))
    if not parts:
        text = sentence(last, names)
        in_run = last.run_id is not None and last.action.startswith("sync.") and last.action != "sync.detect"
        parts.append(f"{subject(events[0])}: {text}" if in_run and events[0].source else text)
    return ", ".join(parts)
