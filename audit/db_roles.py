"""What the application's database role may do, granted after every ``migrate`` by the migration owner.

Production connects the web, worker and beat processes as an application role
(``CONFLICTDESK_DB_APP_ROLE``, default ``conflictdesk_app``) that owns nothing:
it reads and writes the engine's and the desk's tables, but on the audit
tables it may only INSERT and SELECT. The head table it may only read: it moves
with the rows (migration 0003). It cannot ALTER, DISABLE TRIGGER, DROP or
TRUNCATE anything, because only the owner can. Development and the tests run as
the owner; if the application role does not exist, nothing is granted.
"""
from __future__ import annotations

from django.conf import settings
from django.db import connections

AUDIT_APPEND_ONLY = ("audit_auditevent", "audit_auditanchor")
AUDIT_READ_ONLY = ("audit_audithead", "django_migrations")


def grant_app_role(using: str = "default") -> bool:
    """Grant the application role its privileges in this database; False if the role does not exist."""
    role = settings.CONFLICTDESK_DB_APP_ROLE
    connection = connections[using]
    if connection.vendor != "postgresql" or not role:
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        if cursor.fetchone() is None:
            return False
        q = connection.ops.quote_name(role)
        statements = [
            f"GRANT USAGE ON SCHEMA public TO {q}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {q}",
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {q}",
            f"REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA public FROM {q}",
            *(f"REVOKE UPDATE, DELETE ON {t} FROM {q}" for t in AUDIT_APPEND_ONLY),
            *(f"REVOKE INSERT, UPDATE, DELETE ON {t} FROM {q}" for t in AUDIT_READ_ONLY),
            f"GRANT EXECUTE ON FUNCTION audit_lock_head(text) TO {q}",
        ]
        for statement in statements:
            cursor.execute(statement)
    return True
