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


class _DecisionInvalid(DecisionRefused, Invalid):
    """The choice, the reason or a merge's sides are missing or wrong."""

    __qualname__ = "DecisionRefused.Invalid"


class _DecisionStale(DecisionRefused, Stale):
    """The conflict closed or a side moved; ``current`` is the conflict to show now."""

    __qualname__ = "DecisionRefused.Stale"

    def __init__(self, message: str, *, current):
        super().__init__(message)
        self.current = current


class _DecisionUnmapped(DecisionRefused, Blocked):
    """The site version no longer maps, so neither side's content can be computed."""

    __qualname__ = "DecisionRefused.Unmapped"


class _DecisionUnavailable(DecisionRefused, Unavailable):
    """A server could not be read to check the versions."""

    __qualname__ = "DecisionRefused.Unavailable"


DecisionRefused.Invalid = _DecisionInvalid
DecisionRefused.Stale = _DecisionStale
DecisionRefused.Unmapped = _DecisionUnmapped
DecisionRefused.Unavailable = _DecisionUnavailable


# --- dead letters ------------------------------------------------------------

class DeadLetterRefused(Refused):
    """A dead letter was neither re-driven nor discarded."""


class _DeadLetterInvalid(DeadLetterRefused, Invalid):
    """A discard needs a reason; a bulk re-drive's filter must make sense."""

    __qualname__ = "DeadLetterRefused.Invalid"


class _DeadLetterClosed(DeadLetterRefused, Stale):
    """The letter is no longer open (re-driven or discarded meanwhile)."""

    __qualname__ = "DeadLetterRefused.Closed"


class _DeadLetterNoneOpen(DeadLetterRefused, Stale):
    """A bulk re-drive found no open dead letter matching its filter (worked meanwhile, or none ever)."""

    __qualname__ = "DeadLetterRefused.NoneOpen"


class _DeadLetterTooMany(DeadLetterRefused, Blocked):
    """A bulk re-drive's filter matches more letters than one transaction takes."""

    __qualname__ = "DeadLetterRefused.TooMany"


DeadLetterRefused.Invalid = _DeadLetterInvalid
DeadLetterRefused.Closed = _DeadLetterClosed
DeadLetterRefused.NoneOpen = _DeadLetterNoneOpen
DeadLetterRefused.TooMany = _DeadLetterTooMany


# --- sites and people --------------------------------------------------------

class SiteRefused(Refused):
    """A site was not changed."""


class _SiteInUse(SiteRefused, Blocked):
    """The site has synced data (links, runs, events): disable it instead of deleting it."""

    __qualname__ = "SiteRefused.InUse"


class _SiteInvalid(SiteRefused, Invalid):
    """A field is not allowed: a URL off the operator's allow-list, a credentials variable outside the prefix."""

    __qualname__ = "SiteRefused.Invalid"


SiteRefused.InUse = _SiteInUse
SiteRefused.Invalid = _SiteInvalid


class InviteRefused(Refused):
    """Nobody was invited."""


class _InviteInvalid(InviteRefused, Invalid):
    """The role is not one of the desk's roles."""

    __qualname__ = "InviteRefused.Invalid"


InviteRefused.Invalid = _InviteInvalid
