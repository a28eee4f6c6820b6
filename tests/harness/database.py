"""Databases the engine processes use: the test database as a URL, or a scratch database of the bench's own."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager

from .report import log

DEV_DB = "postgres://conflictdesk:conflictdesk@127.0.0.1:5432/conflictdesk"


def db_url_of(database: dict) -> str:
    """A Django DATABASES entry (e.g. pytest-django's test database) as the DATABASE_URL of a subprocess."""
    return (f"postgres://{database['USER']}:{database['PASSWORD']}@"
            f"{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database['NAME']}")


@contextmanager
def scratch_database(name: str):
    """Create ``cd_bench_<name>_<pid>``, point DATABASE_URL at it, set Django up, migrate; drop it afterwards.

    Call it BEFORE anything imports Django settings: they read DATABASE_URL once.
    """
    import psycopg

    base, _, _dev_name = os.environ.get("DATABASE_URL", DEV_DB).rpartition("/")
    db = f"cd_bench_{name}_{os.getpid()}"
    url = f"{base}/{db}"
    admin = psycopg.connect(f"{base}/postgres", autocommit=True)
    admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    admin.execute(f'CREATE DATABASE "{db}"')
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conflictdesk.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")  # the bench runs on the development servers and defaults
    try:
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        settings.DEBUG = False
        t0 = time.monotonic()
        call_command("migrate", verbosity=0)
        log(f"scratch database {db} migrated in {time.monotonic() - t0:.1f} s")
        yield url
    finally:
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: BLE001 - dropping is what matters
            pass
        admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()
        log(f"scratch database {db} dropped")
