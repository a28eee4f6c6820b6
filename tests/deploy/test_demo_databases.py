"""The demo's servers keep their own databases, apart from the test servers'.

A machine that ran `make test` holds the tests' resources in HAPI's database `hapi` and their
compositions in ehrbase_site{i}; a demo on the same databases would sync (and replay) them before
anything of its own. deploy/demo.sh is run here up to the point where it starts the servers, with a
stand-in deploy/services.sh that records the environment it was handed; no server starts.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

from test_containers import DEPLOY, script, script_var

HANDED = ("HAPI_DB_NAME", "EHRBASE_DB_PREFIX")


def demo_server_environment(tmp_path: Path, **env: str) -> dict[str, str]:
    """The values of HANDED that deploy/demo.sh start hands deploy/services.sh."""
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    for name in ("demo.sh", "common.sh", "commands.env"):
        shutil.copy(DEPLOY / name, deploy / name)
    record = tmp_path / "handed.env"
    stand_in = deploy / "services.sh"
    stand_in.write_text(
        "#!/usr/bin/env bash\n"
        + "".join(f'printf "%s=%s\\n" {v} "${{{v}-<unset>}}" >>"{record}"\n' for v in HANDED)
        + "exit 7\n"  # no server: the demo stops here
    )
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IXUSR)
    clean = {k: v for k, v in os.environ.items() if k not in HANDED and not k.startswith("CONFLICTDESK_")}
    proc = subprocess.run(
        ["bash", str(deploy / "demo.sh"), "start", "2"],
        env={**clean, "CONFLICTDESK_RUN_DIR": str(tmp_path / "run"), **env},
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0 and record.exists(), proc.stderr  # it reached the servers and stopped there
    return dict(line.split("=", 1) for line in record.read_text().splitlines())


def assignment(name: str, var: str, **env: str) -> str:
    """What the script's own assignment of var evaluates to under env (run by bash, not re-read)."""
    line = re.search(rf"^{var}=.*$", script(name), re.M).group(0)
    out = subprocess.run(["bash", "-c", f'{line}\nprintf %s "${var}"'], env={"PATH": "/usr/bin:/bin", **env},
                         capture_output=True, text=True, check=True)
    return out.stdout


def test_the_demo_hands_its_servers_databases_other_than_the_test_servers(tmp_path):
    handed = demo_server_environment(tmp_path)
    test_hapi_db = script_var("hapi-fhir.sh", "HAPI_DB_NAME")  # what `make services` starts HAPI on
    test_site_prefix = script_var("ehrbase.sh", "DB_PREFIX")
    assert handed["HAPI_DB_NAME"] not in ("<unset>", "", test_hapi_db)
    assert handed["EHRBASE_DB_PREFIX"] not in ("<unset>", "", test_site_prefix)
    # The launchers take them: the value handed is the database they run on.
    assert assignment("hapi-fhir.sh", "HAPI_DB_NAME", HAPI_DB_NAME=handed["HAPI_DB_NAME"]) == handed["HAPI_DB_NAME"]
    assert assignment("hapi-fhir.sh", "HAPI_DB_NAME") == test_hapi_db
    assert assignment("ehrbase.sh", "DB_PREFIX", EHRBASE_DB_PREFIX=handed["EHRBASE_DB_PREFIX"]) == handed["EHRBASE_DB_PREFIX"]


def test_an_operator_may_still_name_the_demos_databases(tmp_path):
    handed = demo_server_environment(tmp_path, HAPI_DB_NAME="hapi_show", EHRBASE_DB_PREFIX="ehrbase_show_site")
    assert handed == {"HAPI_DB_NAME": "hapi_show", "EHRBASE_DB_PREFIX": "ehrbase_show_site"}


def test_hapi_runs_creates_and_resets_the_database_it_was_given():
    """Every use of the database name in the launcher goes through HAPI_DB_NAME, none spells `hapi`."""
    hapi = script("hapi-fhir.sh")
    launch = re.search(r"^(.*)nohup \"\$jhome/bin/java\"", hapi, re.M).group(1)
    assert 'HAPI_DB_URL="jdbc:postgresql://$PG_HOST:$PG_PORT/$HAPI_DB_NAME"' in launch
    assert re.search(r'-v db="\$HAPI_DB_NAME" .*database\.sql', hapi)
    assert re.search(r'DROP DATABASE IF EXISTS \\"\$HAPI_DB_NAME\\"', hapi)
    assert not re.search(r"postgresql://[^\s\"]*/hapi\b", hapi)
