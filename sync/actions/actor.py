"""Who an action names in the audit trail."""
from __future__ import annotations

from audit.record import system_actor


def actor_of(acting_user) -> str:
    """A person by their login e-mail (staff, never a patient); ``None`` is a command run on this host."""
    if acting_user is None:
        return f"cli:{system_actor()}"
    if not acting_user.is_authenticated:
        return "anonymous"
    return acting_user.email or acting_user.get_username()
