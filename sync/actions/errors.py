"""Why an action refused: nothing changed, and the type says why.

Every refusal is a ``Refused`` of one kind, which the desk and the API each
translate by type (the API: ``Invalid`` 400, ``Stale`` and ``Blocked`` 409,
``Unavailable`` 503), never by its text, which is for people and may be
reworded. Each domain names its refusals under its own base, so a caller
catches ``DecisionRefused`` whole or ``DecisionRefused.Stale`` alone.
"""
from __future__ import annotations


class Refused(Exception):
    """An action did not happen: nothing was changed."""


class Invalid(Refused):
    """The request itself is wrong; ``field`` names the part at fault when there is one."""

    def __init__(self, message: str, *, field: str = ""):
        super().__init__(message)
        self.field = field


class Stale(Refused):
    """The state moved since the caller looked (closed, already done, a version changed)."""


class Blocked(Refused):
    """The state forbids the action for as long as it stays as it is."""


class Unavailable(Refused):
    """A server the action must read cannot be read now; asking again later may work."""


# --- conflicts ---------------------------------------------------------------

class DecisionRefused(Refused):
    """A clinician's decision on a conflict was not applied; no Resolution was stored."""


def _kind(base: type, name: str, kind: type, doc: str) -> type:
    """``base.name``: a refusal of ``base``'s domain and of ``kind`` (so a door translates it by kind)."""
    cls = type(name, (base, kind), {"__doc__": doc, "__module__": __name__, "__qualname__": f"{base.__name__}.{name}"})
    setattr(base, name, cls)
    return cls


class _DecisionStale(DecisionRefused, Stale):
    """The conflict closed or a side moved; ``current`` is the conflict to show now."""

    __qualname__ = "DecisionRefused.Stale"

    def __init__(self, message: str, *, current):
        super().__init__(message)
        self.current = current


DecisionRefused.Stale = _DecisionStale
_kind(DecisionRefused, "Invalid", Invalid, "The choice, the reason or a merge's sides are missing or wrong.")
_kind(DecisionRefused, "Unmapped", Blocked, 
      "The site version no longer maps, so neither side's content can be computed.")
_kind(DecisionRefused, "Unavailable", Unavailable, "A server could not be read to check the versions.")


# --- dead letters ------------------------------------------------------------

class DeadLetterRefused(Refused):
    """A dead letter was neither re-driven nor discarded."""


_kind(DeadLetterRefused, "Invalid", Invalid, "A discard needs a reason; a bulk re-drive's filter must make sense.")
_kind(DeadLetterRefused, "Closed", Stale, "The letter is no longer open (re-driven or discarded meanwhile).")
_kind(DeadLetterRefused, "NoneOpen", Stale,
      "A bulk re-drive found no open dead letter matching its filter (worked meanwhile, or none ever).")
_kind(DeadLetterRefused, "TooMany", Blocked, 
      "A bulk re-drive's filter matches more letters than one transaction takes.")


# --- sites and people --------------------------------------------------------

class SiteRefused(Refused):
    """A site was not changed."""


_kind(SiteRefused, "InUse", Blocked, 
      "The site has synced data (links, runs, events): disable it instead of deleting it.")
_kind(SiteRefused, "Invalid", Invalid,
      "A field is not allowed: a URL off the operator's allow-list, a credentials variable outside the prefix.")


class InviteRefused(Refused):
    """Nobody was invited."""


_kind(InviteRefused, "Invalid", Invalid, "The role is not one of the desk's roles.")


# --- patient matching --------------------------------------------------------

class MatchRefused(Refused):
    """A steward's decision on a (possible) match was not applied at the central server."""


_kind(MatchRefused, "Stale", Stale, "The link is not what the steward saw any more (decided or merged meanwhile).")
_kind(MatchRefused, "Unavailable", Unavailable, "The central server did not answer; nothing was decided.")
