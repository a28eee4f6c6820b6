"""deploy/sql/docker-init.sh on a real, throw-away PostgreSQL cluster (no Docker).

The postgres container runs this script on its first start; here it runs
twice, as the container's superuser would, against a scratch cluster made
with the Debian binaries deploy/postgres.sh installs, and the result is what
the scripts build: the roles, the databases with their owners, EHRbase's
schemas and settings. Needs root (to act as the `postgres` user).
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
SQL = REPO / "deploy" / "sql"


def pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found or os.geteuid() != 0 or not shutil.which("runuser"):
        pytest.fail("needs root and PostgreSQL's binaries (deploy/postgres.sh start installs them)")
    return found[-1].parent


@pytest.fixture
def cluster():
    bindir = pg_bin()
    base = Path(subprocess.run(["mktemp", "-d", "/tmp/conflictdesk-pginit.XXXXXX"], capture_output=True, text=True,
                               check=True).stdout.strip())
    shutil.chown(base, "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_pg, bindir / "initdb", "-D", base / "data", "-U", "postgres", "--auth-local=trust"],
                   check=True, capture_output=True)
    # The superuser over the socket as in the container; everyone else by password, so logins prove it.
    (base / "data" / "pg_hba.conf").write_text("local all postgres trust\nlocal all all scram-sha-256\n")
    subprocess.run([*as_pg, bindir / "pg_ctl", "-D", base / "data", "-w", "-l", base / "log", "-o",
                    f"-p 5499 -k {base} -c listen_addresses=''", "start"], check=True, capture_output=True)
    try:
        yield {"PGHOST": str(base), "PGPORT": "5499"}
    finally:
        subprocess.run([*as_pg, bindir / "pg_ctl", "-D", base / "data", "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def psql(cluster, db, sql):
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", "env", f"PGHOST={cluster['PGHOST']}", f"PGPORT={cluster['PGPORT']}",
         "psql", "-X", "-tA", "-d", db, "-c", sql], capture_output=True, text=True, check=True,
    ).stdout.split()


def test_it_builds_what_the_scripts_build_and_can_run_again(cluster):
    env = [f"{k}={v}" for k, v in cluster.items()] + [
        f"CONFLICTDESK_SQL_DIR={SQL}", "CONFLICTDESK_SITES=3",
        "CONFLICTDESK_DB_PASSWORD=it's-a-quote", "CONFLICTDESK_DB_APP_PASSWORD=app", "HAPI_DB_PASSWORD=h", "EHRBASE_DB_PASSWORD=e", "PATH=/usr/bin:/bin",
    ]
    for _ in range(2):  # idempotent: the way to add sites to an existing volume
        subprocess.run(["runuser", "-u", "postgres", "--", "env", "-i", *env, "bash", str(SQL / "docker-init.sh")],
                       check=True, capture_output=True)
    owners = psql(cluster, "postgres", "SELECT datname || ':' || pg_get_userbyid(datdba) FROM pg_database "
                                       "WHERE datname NOT IN ('postgres', 'template0', 'template1') ORDER BY 1")
    assert owners == ["conflictdesk:conflictdesk", "ehrbase_site1:ehrbase", "ehrbase_site2:ehrbase",
                      "ehrbase_site3:ehrbase", "hapi:hapi"]
    for i in (1, 2, 3):
        db = f"ehrbase_site{i}"
        assert psql(cluster, db, "SELECT nspname || ':' || pg_get_userbyid(nspowner) FROM pg_namespace "
                                 "WHERE nspname IN ('ehr', 'ext') ORDER BY 1") == ["ehr:ehrbase", "ext:ehrbase"]
        assert psql(cluster, db, "SELECT extnamespace::regnamespace FROM pg_extension WHERE extname = 'uuid-ossp'") == ["ext"]
        assert psql(cluster, db, "SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting s JOIN pg_database d "
                                 f"ON d.oid = s.setdatabase WHERE datname = '{db}'") == ["search_path=ext,IntervalStyle=iso_8601"]
    # Each role logs in with its password, a quote included (the SQL quotes it with %L), and only with it.
    for user, db, password in (("conflictdesk", "conflictdesk", "it's-a-quote"), ("conflictdesk_app", "conflictdesk", "app"),
                               ("hapi", "hapi", "h"),
                               ("ehrbase_restricted", "ehrbase_site2", "e")):
        assert login(cluster, user, db, password) == user
        assert login(cluster, user, db, password + "x") is None


def login(cluster, user, db, password):
    proc = subprocess.run(["psql", "-X", "-tA", "-h", cluster["PGHOST"], "-p", cluster["PGPORT"], "-U", user, "-d", db,
                           "-c", "SELECT current_user"], env={"PGPASSWORD": password, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None
