"""The container files agree with the scripts, the settings and each other.

No Docker runs here, so these tests read the Dockerfiles, the compose file
and the scripts, and run what can run without Docker: the image's role
dispatcher and the postgres init script, with stand-ins for the programs they
start. Names, ports and commands are taken from the scripts, never restated.
"""
from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from dockerfile_reader import parse as parse_dockerfile

from sync.site_policy import CREDENTIALS_PREFIX

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
APP_ROLES = ("web", "worker", "beat", "migrate")
# EHRbase's basic-auth users (user:password), as deploy/ehrbase.sh and the EHRbase image take them.
CREDENTIALS = ("EHRBASE_CREDENTIALS", "EHRBASE_ADMIN_CREDENTIALS")
REQUIRED_IN_PRODUCTION = re.compile(r"([A-Z][A-Z0-9_]+) is required")
INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


# --- readers -----------------------------------------------------------------

def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def service(name: str) -> dict:
    return compose()["services"][name]


def script(name: str) -> str:
    """A deploy script with backslash-continued lines joined."""
    return re.sub(r"[ \t]*\\\n\s*", " ", (DEPLOY / name).read_text())


def script_var(name: str, var: str) -> str:
    """A plain assignment in a deploy script (VAR=value or VAR="${X:-default}" -> default)."""
    match = re.search(rf'^\s*{var}=("[^"]*"|\S+)', script(name), re.M)
    assert match, f"{var} not assigned in deploy/{name}"
    value = match.group(1).strip('"')
    default = re.fullmatch(r"\$\{\w+:-([^}]*)\}", value)
    return default.group(1) if default else value


def commands() -> dict[str, str]:
    """deploy/commands.env as POSIX sh sees it (the entry point sources it)."""
    names = re.findall(r"^(CONFLICTDESK_\w+_CMD)=", (DEPLOY / "commands.env").read_text(), re.M)
    out = subprocess.run(
        ["sh", "-c", '. ./commands.env && for n in "$@"; do eval "printf \'%s=%s\\n\' $n \\"\\$$n\\""; done', "sh", *names],
        cwd=DEPLOY, capture_output=True, text=True, check=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def role_command(role: str) -> list[str]:
    return shlex.split(commands()[f"CONFLICTDESK_{role.upper()}_CMD"])


def settings_env_names() -> set[str]:
    """Every environment variable the Django settings and the Celery app read."""
    names = set()
    for path in (REPO / "conflictdesk" / "settings.py", REPO / "conflictdesk" / "celery.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
                continue
            func = ast.unparse(node.func)
            if func in {"env_str", "env_bool", "env_int", "env_list", "_every", "os.environ.get", "os.getenv"}:
                names.add(node.args[0].value)
    return names


def loopback_defaults() -> dict[str, str]:
    """Settings whose default URL points at this machine: wrong inside a container."""
    out = {}
    for node in ast.walk(ast.parse((REPO / "conflictdesk" / "settings.py").read_text())):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "env_str" and len(node.args) == 2:
            for const in ast.walk(node.args[1]):
                if isinstance(const, ast.Constant) and isinstance(const.value, str) and re.search(
                    r"://(?:[^/@]*@)?(127\.0\.0\.1|localhost)\b", const.value
                ):
                    out[node.args[0].value] = const.value
    return out


def required_in_production() -> set[str]:
    """Import the settings with DJANGO_DEBUG=0 and nothing else; add each variable they demand."""
    env = {"PATH": os.environ["PATH"], "DJANGO_DEBUG": "0"}
    found: set[str] = set()
    for _ in range(20):
        proc = subprocess.run(
            [sys.executable, "-c", "import conflictdesk.settings"], cwd=REPO, env=env, capture_output=True, text=True
        )
        if proc.returncode == 0:
            return found
        match = REQUIRED_IN_PRODUCTION.search(proc.stderr)
        assert match, proc.stderr[-2000:]
        found.add(match.group(1))
        env[match.group(1)] = "postgres://u:p@h:5432/d" if "URL" in match.group(1) else "x"
    raise AssertionError("settings kept asking for more variables")


def dotenv_example() -> dict[str, str]:
    pairs = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def interpolations(node) -> list[tuple[str, str, str]]:
    """Every ${VAR}, ${VAR:-default} and ${VAR:?message} in a compose subtree."""
    if isinstance(node, dict):
        return [i for v in node.values() for i in interpolations(v)]
    if isinstance(node, list):
        return [i for v in node for i in interpolations(v)]
    if isinstance(node, str):
        return [(m.group(1), m.group(2) or "", m.group(3) or "") for m in INTERPOLATION.finditer(node)]
    return []


def healthcheck_command(svc: dict) -> str:
    test = svc["healthcheck"]["test"]
    return " ".join(test[1:]) if isinstance(test, list) else test


def fake_bin(tmp_path: Path, *names: str) -> Path:
    """Programs that print their own name and arguments, one per line, instead of running."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in names:
        exe = bin_dir / name
        exe.write_text('#!/bin/sh\nprintf "%s\\n" "$(basename "$0")" "$@"\n')
        exe.chmod(0o755)
    return bin_dir


# --- the app image -------------------------------------------------------------

def test_app_image_is_multi_stage_on_python_311_slim():
    dockerfile = parse_dockerfile(REPO / "Dockerfile")
    assert len(dockerfile.stages) >= 2
    for stage in dockerfile.stages:
        assert dockerfile.resolve(stage.base).startswith("python:3.11-slim"), stage.base
    builder = dockerfile.stage("builder")
    assert any("pip wheel" in run.args and "-r /tmp/requirements.txt" in run.args for run in builder.all("RUN"))
    installs = [run for run in dockerfile.final.all("RUN") if "pip install" in run.args]
    assert len(installs) == 1
    mounts = [value for key, value in installs[0].flags() if key == "mount"]
    assert any("from=builder" in m and "target=/wheels" in m for m in mounts), "final stage must install the builder's wheels"
    assert "--no-index" in installs[0].args and "--find-links /wheels" in installs[0].args


def test_compilers_stay_in_the_builder():
    dockerfile = parse_dockerfile(REPO / "Dockerfile")
    compilers = re.compile(r"\b(build-essential|gcc|g\+\+|clang|make|libpq-dev|python3-dev)\b")
    assert any(compilers.search(run.args) for run in dockerfile.stage("builder").all("RUN"))
    for run in dockerfile.final.all("RUN"):
        assert not compilers.search(run.args), run.args
    copies = [c.args for c in dockerfile.final.all("COPY") if "--from=builder" in c.args]
    assert not copies, "wheels are bind-mounted, never copied into a layer"


def test_app_image_runs_as_the_user_it_creates():
    final = parse_dockerfile(REPO / "Dockerfile").final
    users = final.all("USER")
    assert users, "no USER: the image would run as root"
    uid = users[-1].args.split(":")[0]
    assert uid not in {"0", "root"}
    created = re.search(r"useradd .*--uid (\d+)", " ".join(r.args for r in final.all("RUN")))
    assert created and created.group(1) == uid
    # Nothing after USER switches back or needs root at run time.
    assert final.instructions.index(users[-1]) > max(final.instructions.index(r) for r in final.all("RUN"))


def test_build_time_secret_cannot_reach_runtime():
    dockerfile = parse_dockerfile(REPO / "Dockerfile")
    for stage in dockerfile.stages:
        for ins in stage.all("ENV") + stage.all("ARG"):
            assert "DJANGO_SECRET_KEY" not in ins.args, f"{ins.keyword} {ins.args} persists into the image"
    assert not any("SECRET" in k for k in dockerfile.global_args)
    collect = [r.args for r in dockerfile.final.all("RUN") if "collectstatic" in r.args]
    assert len(collect) == 1
    # Given inline on that RUN line only, with production settings so the build checks them.
    secret = re.search(r"DJANGO_SECRET_KEY=(\S+) .*manage\.py collectstatic", collect[0])
    assert secret and "DJANGO_DEBUG=0" in collect[0]
    assert secret.group(1) not in (DEPLOY / "docker-compose.yml").read_text()
    assert secret.group(1) not in (DEPLOY / ".env.example").read_text()


def test_healthcheck_probes_healthz_on_the_web_port():
    dockerfile = parse_dockerfile(REPO / "Dockerfile")
    checks = dockerfile.final.all("HEALTHCHECK")
    assert len(checks) == 1
    probe = " ".join(checks[0].exec_form())
    bind = role_command("web")[role_command("web").index("--bind") + 1]
    port = bind.rsplit(":", 1)[1]
    assert f"http://127.0.0.1:{port}/healthz" in probe
    assert f"EXPOSE {port}" in {f"EXPOSE {e.args}" for e in dockerfile.final.all("EXPOSE")}
    # Compose restates the same probe for web.
    assert service("web")["healthcheck"]["test"][1:] == checks[0].exec_form()


def test_dockerignore_keeps_secrets_and_local_state_out_but_not_what_the_image_needs():
    patterns = [
        line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(
            fnmatch.fnmatch(path, p.lstrip("/")) or fnmatch.fnmatch(path, p.lstrip("/") + "/*")
            or fnmatch.fnmatch("/" + path, "*/" + p.removeprefix("**/"))
            for p in patterns
        )

    for path in (".git/config", ".venv/bin/python", ".run/redis.pid", "deploy/.env", ".env",
                 "deploy/ehrbase/target/ehrbase-launcher.jar"):
        assert ignored(path), path
    for path in ("requirements.txt", "manage.py", "deploy/commands.env", "conflictdesk/settings.py",
                 "static/desk.css", "templates/base.html", "deploy/ehrbase/pom.xml", "deploy/hapi-fhir/src/main/x.java"):
        assert not ignored(path), path


@pytest.mark.parametrize("role", APP_ROLES)
def test_entry_point_runs_each_role_from_commands_env(role, tmp_path):
    """Run the image's role dispatcher with stand-in programs: the argv it execs is commands.env's."""
    heredocs = [c for c in parse_dockerfile(REPO / "Dockerfile").final.all("COPY") if c.heredoc]
    entry = parse_dockerfile(REPO / "Dockerfile").final.all("ENTRYPOINT")[-1].exec_form()
    dispatcher = next(c for c in heredocs if c.args.endswith(entry[0]))
    body = dispatcher.heredoc.replace("/app/deploy/commands.env", str(DEPLOY / "commands.env"))
    (tmp_path / "role").write_text(body)
    bin_dir = fake_bin(tmp_path, "gunicorn", "celery", "python")
    out = subprocess.run(
        ["sh", str(tmp_path / "role"), role], env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    assert out == role_command(role)
    assert parse_dockerfile(REPO / "Dockerfile").final.all("CMD")[-1].exec_form() == ["web"]


# --- commands: one source -------------------------------------------------------

def test_compose_runs_each_app_role_by_name_from_one_image():
    services = compose()["services"]
    for role in APP_ROLES:
        assert services[role]["command"] == [role]
        assert services[role]["build"] == {"context": "..", "dockerfile": "Dockerfile"}
        assert services[role]["image"] == services["web"]["image"]


def test_worker_runs_with_the_flags_the_real_server_tests_use(tmp_path, monkeypatch):
    """tests/harness/engine.py starts every worker the real-server tests and benchmarks trust; production matches it."""
    from tests.harness import engine

    started = []
    monkeypatch.setattr(engine.ProcessSet, "spawn", lambda self, name, args, log_name=None: started.append((name, args)))
    engine.Worker({}, tmp_path).start()
    engine.Engine({}, tmp_path, beat=False, poll_loop=False).start()
    assert [name for name, _ in started] == ["worker", "w1", "w2"]
    for name, args in started:
        assert args[:3] == [sys.executable, "-m", "celery"], name
        argv = ["celery", *args[3:]]
        # Test-only: embedded beat (-B), node name (-n), fixed concurrency (-c N), a temporary schedule
        # file (-s PATH), the log level.
        for flag, takes_value in (("-B", False), ("-n", True), ("-c", True), ("-s", True), ("--loglevel", True)):
            if flag in argv:
                i = argv.index(flag)
                del argv[i: i + (2 if takes_value else 1)]
        assert argv == role_command("worker"), name
    beat = role_command("beat")
    assert beat[:4] == ["celery", "-A", "conflictdesk", "beat"]
    assert beat[beat.index("--schedule") + 1].startswith(".run/"), "the only directory the image's user may write"


def test_migrate_is_make_migrate():
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^migrate:.*\n\t\$\(PY\) (.+)$", makefile, re.M)
    assert recipe, "Makefile has no `migrate` target running $(PY)"
    assert ["python", *shlex.split(recipe.group(1))] == role_command("migrate")


def test_scripts_start_worker_and_beat_from_commands_env():
    """The demo runs the same commands as the image: demo.sh sources commands.env and hands them to
    supervisord, whose programs run them from the environment; neither spells one itself."""
    demo, supervised = script("demo.sh"), (DEPLOY / "supervisord.conf").read_text()
    assert re.search(r'^source "\$HERE/commands\.env"$', demo, re.M)
    assert re.search(r"^export .*\bCONFLICTDESK_WORKER_CMD CONFLICTDESK_BEAT_CMD\b", demo, re.M)
    for role in ("worker", "beat"):
        program = re.search(rf"^\[program:celery-{role}\]\ncommand=(.+)$", supervised, re.M)
        assert program and f"%(ENV_CONFLICTDESK_{role.upper()}_CMD)s" in program.group(1), role
    for path in [*DEPLOY.glob("*.sh"), DEPLOY / "supervisord.conf", REPO / "Makefile"]:
        literal = re.findall(r"celery\s+-A\s+\S+\s+(?:worker|beat)\b.*", path.read_text())
        assert not literal, f"{path.name} spells a Celery command instead of reading deploy/commands.env: {literal}"


def test_web_port_is_the_desks_port_everywhere():
    port = script_var("demo.sh", "WEB_PORT")
    assert re.search(r'wait_http web "http://127\.0\.0\.1:\$WEB_PORT/healthz"', script("demo.sh"))
    bind = role_command("web")[role_command("web").index("--bind") + 1]
    assert bind == f"0.0.0.0:{port}"
    assert service("web")["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert dotenv_example()["CONFLICTDESK_BASE_URL"] == f"http://127.0.0.1:{port}"


def test_every_commands_env_entry_is_a_role_of_the_entry_point():
    dispatcher = next(c for c in parse_dockerfile(REPO / "Dockerfile").final.all("COPY") if c.heredoc)
    labels = re.findall(r"^\s*(\w+)\) exec \$CONFLICTDESK_(\w+)_CMD ;;", dispatcher.heredoc, re.M)
    assert labels and all(label.upper() == var for label, var in labels)
    assert {f"CONFLICTDESK_{var}_CMD" for _, var in labels} == set(commands())
    assert {label for label, _ in labels} == set(APP_ROLES)


# --- the app's environment ------------------------------------------------------

def test_app_roles_pass_only_variables_the_settings_read():
    known = settings_env_names()
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL"} <= known  # the reader works
    for role in APP_ROLES:
        # A site's credentials are read by the name its row gives (sync/site_policy.py's prefix), not by settings.
        unknown = {n for n in service(role)["environment"] if not n.startswith(CREDENTIALS_PREFIX)} - known
        assert not unknown, f"{role} passes {sorted(unknown)}, which conflictdesk/settings.py never reads"


def test_app_roles_set_every_variable_production_requires():
    required = required_in_production()
    assert {"DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_URL"} <= required
    loopback = loopback_defaults()
    assert {"DATABASE_URL", "CELERY_BROKER_URL", "CONFLICTDESK_FHIR_BASE_URL"} <= set(loopback)
    for role in APP_ROLES:
        env = service(role)["environment"]
        assert env["DJANGO_DEBUG"] == "0", "containers run production settings"
        missing = (required | set(loopback)) - set(env)
        assert not missing, f"{role} leaves {sorted(missing)} to a default that is wrong in a container"


def test_app_reaches_servers_by_service_name_on_the_scripts_ports():
    env = service("web")["environment"]
    services = compose()["services"]
    pg_port = script_var("common.sh", "PG_PORT")
    redis_port = script_var("redis.sh", "REDIS_PORT")
    hapi_port = script_var("hapi-fhir.sh", "HAPI_PORT")
    db = urlsplit(INTERPOLATION.sub(lambda m: m.group(1).lower(), env["DATABASE_URL"]))
    assert (db.hostname, str(db.port)) == ("postgres", pg_port) and "postgres" in services
    # The running roles connect as the application role, migrate as the owner: the names deploy/postgres.sh reads.
    assert re.fullmatch(
        r"postgres://\$\{CONFLICTDESK_DB_APP_ROLE:-conflictdesk_app\}:\$\{CONFLICTDESK_DB_APP_PASSWORD:\?[^}]*\}"
        r"@postgres:\d+/\$\{CONFLICTDESK_DB_NAME:-conflictdesk\}",
        env["DATABASE_URL"],
    )
    assert re.fullmatch(
        r"postgres://\$\{CONFLICTDESK_DB_USER:-conflictdesk\}:\$\{CONFLICTDESK_DB_PASSWORD:\?[^}]*\}@postgres:\d+/"
        r"\$\{CONFLICTDESK_DB_NAME:-conflictdesk\}",
        service("migrate")["environment"]["DATABASE_URL"],
    )
    for name in ("CONFLICTDESK_DB_USER", "CONFLICTDESK_DB_PASSWORD", "CONFLICTDESK_DB_NAME", "CONFLICTDESK_DB_APP_ROLE",
                 "CONFLICTDESK_DB_APP_PASSWORD"):
        assert name in script("postgres.sh")
    broker = urlsplit(env["CELERY_BROKER_URL"])
    assert (broker.scheme, broker.hostname, str(broker.port)) == ("redis", "redis", redis_port)
    fhir = urlsplit(env["CONFLICTDESK_FHIR_BASE_URL"])
    script_base = urlsplit(script_var("hapi-fhir.sh", "HAPI_BASE").replace("$HAPI_PORT", hapi_port))
    assert (fhir.hostname, str(fhir.port), fhir.path) == ("hapi-fhir", hapi_port, script_base.path)


# --- secrets ----------------------------------------------------------------------

def test_no_password_or_secret_has_a_default_outside_the_demo_env_file():
    doc = compose()
    secretish = re.compile(r"PASSWORD|SECRET|TOKEN")
    for name, svc in doc["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if secretish.search(key):
                found = interpolations(value)
                assert found and all(op == ":?" for _, op, _ in found), f"{name}.{key}={value!r}"
    for var, op, _ in interpolations(doc):
        if secretish.search(var):
            assert op == ":?", f"${{{var}}} must be required, not defaulted or silently empty"
        assert op, f"${{{var}}} without :- or :? becomes an empty string when unset"


def test_env_example_defines_exactly_what_compose_interpolates():
    example = dotenv_example()
    used = {var for var, _, _ in interpolations(compose())}
    required = {var for var, op, _ in interpolations(compose()) if op == ":?"}
    assert required <= set(example), f"missing from .env.example: {sorted(required - set(example))}"
    assert set(example) <= used, f".env.example sets what compose never reads: {sorted(set(example) - used)}"
    for key, value in example.items():
        if re.search(r"PASSWORD|SECRET|TOKEN", key):
            assert "demo" in value, f"{key}: demo values must say so"


# --- servers: the scripts' names, ports and options --------------------------------

def ehrbase_services() -> dict[int, dict]:
    sites = {int(m.group(1)): svc for n, svc in compose()["services"].items() if (m := re.fullmatch(r"ehrbase-site(\d+)", n))}
    assert sorted(sites) == list(range(1, len(sites) + 1)) and len(sites) >= 2
    return sites


def script_launch_options(i: int, *, pg_host: str, pg_port: str) -> dict[str, str]:
    """The --key=value options deploy/ehrbase.sh gives site i, its variables substituted."""
    body = re.search(r"^launch\(\) \{\n(.*?)^\}", script("ehrbase.sh"), re.S | re.M).group(1)
    values = {
        "port": str(int(script_var("ehrbase.sh", "BASE_PORT")) + i), "i": str(i),
        "PG_HOST": pg_host, "PG_PORT": pg_port,
        "DB_USER_ROLE": script_var("ehrbase.sh", "DB_USER_ROLE"), "DB_ADMIN_ROLE": script_var("ehrbase.sh", "DB_ADMIN_ROLE"),
        "DB_PREFIX": script_var("ehrbase.sh", "DB_PREFIX"),  # its default: the containers hold no demo
    }
    options = {}
    for key, raw in re.findall(r"--([a-z][\w.-]*)=(\"[^\"]*\"|\S+)", body):
        value = re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], raw.strip('"'))
        options[key] = value
    return options


def test_ehrbase_sites_get_the_scripts_options_ports_and_databases():
    pg_port = script_var("common.sh", "PG_PORT")
    for i, svc in ehrbase_services().items():
        expected = script_launch_options(i, pg_host="postgres", pg_port=pg_port)
        assert expected["spring.datasource.url"].endswith(f"/ehrbase_site{i}")
        assert expected.pop("server.address") == "127.0.0.1"
        given = dict(opt.removeprefix("--").split("=", 1) for opt in svc["command"])
        assert given.pop("server.address") == "0.0.0.0", "inside a container the server must leave loopback"
        assert given == expected, f"ehrbase-site{i}"
        port = expected["server.port"]
        assert svc["ports"] == [f"127.0.0.1:{port}:{port}"]
        status_path = re.search(r'status_url\(\) \{ echo "http://127\.0\.0\.1:\$\(port_of "\$1"\)(\S+)"', script("ehrbase.sh")).group(1)
        assert f"http://127.0.0.1:{port}{status_path}" in healthcheck_command(svc)


def test_ehrbase_passwords_travel_in_the_environment_as_in_the_script():
    body = re.search(r"^launch\(\) \{\n(.*?)^\}", script("ehrbase.sh"), re.S | re.M).group(1)
    from_password = set(re.findall(r"(\w+)=\"\$DB_PASSWORD\"", body))
    assert from_password == {"SPRING_DATASOURCE_PASSWORD", "SPRING_FLYWAY_PASSWORD"}
    assert re.search(r'DB_PASSWORD="\$\{EHRBASE_DB_PASSWORD:-', script("ehrbase.sh"))
    for i, svc in ehrbase_services().items():
        for name in from_password:
            assert [v for v, _, _ in interpolations(svc["environment"][name])] == ["EHRBASE_DB_PASSWORD"]
        assert not any("PASSWORD" in opt for opt in svc["command"]), "never in argv"
        assert set(svc["environment"]) == from_password | {"EHRBASE_JAVA_OPTS", *CREDENTIALS}
        for name in CREDENTIALS:  # the basic-auth users, required, from the variables the script takes
            assert [(v, op) for v, op, _ in interpolations(svc["environment"][name])] == [(name, ":?")]


def test_ehrbase_image_runs_the_jvm_as_the_script_does():
    dockerfile = parse_dockerfile(DEPLOY / "ehrbase" / "Dockerfile")
    entry = dockerfile.final.all("ENTRYPOINT")[-1].exec_form()[2]
    default = script_var("ehrbase.sh", "JAVA_OPTS_PRODUCTION")  # the image is production: C2 on
    assert f"${{EHRBASE_JAVA_OPTS:-{default}}}" in entry
    native = re.search(r'JAVA_OPTS="\$JAVA_OPTS (--enable-native-access=\S+)"', script("ehrbase.sh")).group(1)
    assert native in entry
    run_jar = script_var("ehrbase.sh", "RUN_JAR").rsplit("/", 1)[1]
    assert entry.endswith(f'/{run_jar} "$@"'), "site options come from compose's command"
    assert "MALLOC_ARENA_MAX=2" in " ".join(e.args for e in dockerfile.final.all("ENV"))
    assert "MALLOC_ARENA_MAX=2" in script("ehrbase.sh")
    # Built as the script builds it, extracted as it runs it, on a Java it accepts.
    build = " ".join(r.args for r in dockerfile.stage("build").all("RUN"))
    assert "mvn -B -q -DskipTests package" in build and "-Djarmode=tools" in build and "extract" in build
    min_java = int(re.search(r"java_home_for (\d+)", script("ehrbase.sh")).group(1))
    assert int(dockerfile.global_args["JAVA_VERSION"]) >= min_java
    release = int(re.search(r"<maven.compiler.release>(\d+)<", (DEPLOY / "ehrbase" / "pom.xml").read_text()).group(1))
    assert int(dockerfile.global_args["JAVA_VERSION"]) >= release
    assert dockerfile.final.all("USER")[-1].args.split(":")[0] not in {"0", "root"}


def test_hapi_gets_the_scripts_database_port_and_jvm_settings():
    svc = service("hapi-fhir")
    env = svc["environment"]
    name, user = script_var("hapi-fhir.sh", "HAPI_DB_NAME"), script_var("hapi-fhir.sh", "HAPI_DB_USER")
    pg_port, port = script_var("common.sh", "PG_PORT"), script_var("hapi-fhir.sh", "HAPI_PORT")
    # The variables the script hands the JVM, with the compose network's database host.
    launch = re.search(r"^(.*)nohup \"\$jhome/bin/java\"", script("hapi-fhir.sh"), re.M).group(1)
    handed = set(re.findall(r"(\w+)=", launch))
    assert {"HAPI_DB_PASSWORD", "HAPI_DB_URL", "HAPI_DB_USER"} <= handed  # the reader found them
    dockerfile = parse_dockerfile(DEPLOY / "hapi-fhir" / "Dockerfile")
    image_env = set(re.findall(r"(\w+)=", " ".join(e.args for e in dockerfile.final.all("ENV"))))
    missing = handed - set(env) - image_env
    assert not missing, f"deploy/hapi-fhir.sh hands the JVM {sorted(missing)}; neither compose nor the image does"
    assert set(env) - {"HAPI_XMX", "HAPI_JAVA_OPTS"} <= handed
    assert env["HAPI_DB_URL"] == f"jdbc:postgresql://postgres:{pg_port}/{name}"
    assert env["HAPI_DB_USER"] == user
    assert [v for v, op, _ in interpolations(env["HAPI_DB_PASSWORD"])] == ["HAPI_DB_PASSWORD"]
    assert svc["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert f"http://127.0.0.1:{port}/fhir/metadata" in healthcheck_command(svc)
    entry = dockerfile.final.all("ENTRYPOINT")[-1].exec_form()[2]
    jvm = re.search(r'nohup "\$jhome/bin/java" (.+?) -jar', script("hapi-fhir.sh")).group(1)
    assert '-Xmx"${HAPI_XMX:-1g}"' in jvm and "${HAPI_JAVA_OPTS:-" in jvm  # the reader found the flags
    production = re.search(r'^\s*production\) jit="([^"]*)" ;;$', script("hapi-fhir.sh"), re.M).group(1)
    assert f"exec java {jvm.replace('$jit', production)} " in entry  # the image runs the production JIT
    assert f"EXPOSE {port}" in {f"EXPOSE {e.args}" for e in dockerfile.final.all("EXPOSE")}
    assert re.search(rf"^server\.port={port}$", (DEPLOY / "hapi-fhir/src/main/resources/application.properties").read_text(), re.M)
    release = int(re.search(r"<maven.compiler.release>(\d+)<", (DEPLOY / "hapi-fhir" / "pom.xml").read_text()).group(1))
    assert int(dockerfile.global_args["JAVA_VERSION"]) >= release
    assert dockerfile.final.all("USER")[-1].args.split(":")[0] not in {"0", "root"}


def hapi_package_fetches(properties: Path, tmp_path: Path) -> list[str]:
    """What the HAPI image's packages stage asks npm for, run with a stand-in npm."""
    stage = parse_dockerfile(DEPLOY / "hapi-fhir" / "Dockerfile").stage("packages")
    body = next(r.heredoc for r in stage.all("RUN") if r.heredoc)
    body = body.replace("/tmp/application.properties", str(properties))
    bin_dir = fake_bin(tmp_path, "npm")
    out = subprocess.run(["sh", "-c", body], env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "@" in line]


def script_package_list(properties: Path) -> list[str] | None:
    """deploy/hapi-fhir.sh's own package_list on a properties file, as npm names (None: the script has none)."""
    func = re.search(r"^package_list\(\) \{\n.*?^\}\n", (DEPLOY / "hapi-fhir.sh").read_text(), re.S | re.M)
    if not func:
        return None
    out = subprocess.run(["bash", "-c", f'PROPS="$1"\n{func.group(0)}\npackage_list', "bash", str(properties)],
                         capture_output=True, text=True).stdout
    return [f"{ref.split('#')[0]}@{ref.split('#')[1]}" for ref in out.split()]


def test_hapi_image_fetches_the_ig_packages_the_script_fetches(tmp_path):
    real = DEPLOY / "hapi-fhir/src/main/resources/application.properties"
    sample = tmp_path / "sample.properties"
    sample.write_text("a=b\nconflictdesk.packages.list=\\\n  p.one#1.0.0:STORE_ONLY,\\\n  p.two#2.0.0-ballot:STORE_AND_INSTALL\nc=d\n")
    assert hapi_package_fetches(sample, tmp_path) == ["p.one@1.0.0", "p.two@2.0.0-ballot"]
    expected = script_package_list(real)
    if expected is None:  # the script fetches nothing: neither may the image
        assert "conflictdesk.packages.list" not in real.read_text()
        expected = []
    else:
        assert script_package_list(sample) == ["p.one@1.0.0", "p.two@2.0.0-ballot"]
    assert hapi_package_fetches(real, tmp_path) == expected


def test_postgres_is_configured_as_postgres_sh_configures_it():
    svc = service("postgres")
    raised = re.search(r"ALTER SYSTEM SET max_connections = (\d+)", script("postgres.sh")).group(1)
    assert svc["command"] == ["postgres", "-c", f"max_connections={raised}"]
    assert f"-p {script_var('common.sh', 'PG_PORT')}" in healthcheck_command(svc).replace('", "', " ")
    assert "./sql/docker-init.sh:/docker-entrypoint-initdb.d/10-conflictdesk.sh:ro" in svc["volumes"]
    init = (DEPLOY / "sql" / "docker-init.sh").read_text()
    sql_dir = re.search(r'SQL_DIR="\$\{CONFLICTDESK_SQL_DIR:-(\S+)\}"', init).group(1)
    assert f"./sql:{sql_dir}:ro" in svc["volumes"]
    demanded = set(re.findall(r"\$\{(\w+):\?\}", init))
    assert demanded == {"CONFLICTDESK_DB_PASSWORD", "CONFLICTDESK_DB_APP_PASSWORD", "HAPI_DB_PASSWORD",
                        "EHRBASE_DB_PASSWORD"}
    assert demanded | {"CONFLICTDESK_SITES", "POSTGRES_PASSWORD"} <= set(svc["environment"])


def test_redis_keeps_the_scripts_persistence():
    words = shlex.split(re.search(r'redis-server --port "\$REDIS_PORT" (.+)', script("redis.sh")).group(1))
    for option in ("--appendonly", "--appendfsync"):
        assert service("redis")["command"][service("redis")["command"].index(option) + 1] == words[words.index(option) + 1]
    port = script_var("redis.sh", "REDIS_PORT")
    assert service("redis")["command"][:3] == ["redis-server", "--port", port]
    assert f"-p {port}" in healthcheck_command(service("redis")).replace('", "', " ")


def test_init_script_creates_what_the_scripts_create(tmp_path):
    """Run sql/docker-init.sh with a stand-in psql: the roles, databases and SQL files match the scripts'."""
    log = tmp_path / "psql.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "psql").write_text(f'#!/bin/sh\nprintf "%s " "$@" >>{log}\nprintf "| %s\\n" "$(cat | md5sum)" >>{log}\n')
    (bin_dir / "psql").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CONFLICTDESK_SQL_DIR": str(DEPLOY / "sql"), "CONFLICTDESK_SITES": "3",
           "CONFLICTDESK_DB_PASSWORD": "a", "CONFLICTDESK_DB_APP_PASSWORD": "d", "HAPI_DB_PASSWORD": "b",
           "EHRBASE_DB_PASSWORD": "c"}
    subprocess.run(["bash", str(DEPLOY / "sql" / "docker-init.sh")], env=env, check=True, capture_output=True)
    digest = {
        subprocess.run(["md5sum"], input=(DEPLOY / "sql" / f).read_bytes(), capture_output=True).stdout.decode(): f
        for f in ("role.sql", "database.sql", "ehrbase_site.sql")
    }
    calls = []
    for line in log.read_text().splitlines():
        args, _, md5 = line.rpartition(" | ")
        words = args.split()
        variables = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("ON_ERROR"))
        calls.append((digest[md5 + "\n"], words[words.index("-d") + 1], variables))
    adm, usr = script_var("ehrbase.sh", "DB_ADMIN_ROLE"), script_var("ehrbase.sh", "DB_USER_ROLE")
    hapi_db, hapi_user = script_var("hapi-fhir.sh", "HAPI_DB_NAME"), script_var("hapi-fhir.sh", "HAPI_DB_USER")
    app = re.search(r'-v role="\$\{CONFLICTDESK_DB_USER:-(\w+)\}"', script("postgres.sh")).group(1)
    app_role = re.search(r'-v role="\$\{CONFLICTDESK_DB_APP_ROLE:-(\w+)\}"', script("postgres.sh")).group(1)
    assert calls == [
        ("role.sql", "postgres", {"role": app, "pass": "a"}),
        ("database.sql", "postgres", {"db": app, "owner": app}),
        ("role.sql", "postgres", {"role": app_role, "pass": "d"}),
        ("role.sql", "postgres", {"role": hapi_user, "pass": "b"}),
        ("database.sql", "postgres", {"db": hapi_db, "owner": hapi_user}),
        ("role.sql", "postgres", {"role": adm, "pass": "c"}),
        ("role.sql", "postgres", {"role": usr, "pass": "c"}),
        *[
            call for i in (1, 2, 3) for call in (
                ("database.sql", "postgres", {"db": f"ehrbase_site{i}", "owner": adm}),
                ("ehrbase_site.sql", f"ehrbase_site{i}", {"db": f"ehrbase_site{i}", "adm": adm, "usr": usr}),
            )
        ],
    ]


def test_scripts_and_container_share_one_copy_of_the_sql():
    uses = {
        "postgres.sh": {"role.sql", "database.sql"},
        "hapi-fhir.sh": {"role.sql", "database.sql"},
        "ehrbase.sh": {"role.sql", "database.sql", "ehrbase_site.sql"},
    }
    for name, files in uses.items():
        text = script(name)
        assert set(re.findall(r"(\w+\.sql)\"", text)) == files, name
        assert not re.search(r"CREATE (ROLE|DATABASE|SCHEMA)", text), f"{name} still carries its own DDL"


# --- health and start order ---------------------------------------------------------

def test_every_long_running_service_has_a_health_check_and_waits_for_healthy_dependencies():
    services = compose()["services"]
    for name, svc in services.items():
        check = svc.get("healthcheck", {})
        if name == "migrate":
            assert check == {"disable": True} and svc["restart"] == "no"
            continue
        assert check.get("test") and not check.get("disable"), f"{name} has no health check"
        for dep, how in (svc.get("depends_on") or {}).items():
            expected = "service_completed_successfully" if dep == "migrate" else "service_healthy"
            assert how == {"condition": expected}, f"{name} -> {dep}"
            assert dep == "migrate" or services[dep].get("healthcheck", {}).get("test"), f"{dep} has nothing to be healthy by"
    for role in ("web", "worker", "beat"):
        assert {"postgres", "redis", "migrate"} <= set(services[role]["depends_on"])
    assert "hapi-fhir" in services["worker"]["depends_on"]


def test_worker_and_beat_checks_probe_their_own_process():
    worker = healthcheck_command(service("worker"))
    assert "inspect ping" in worker and "celery@$$HOSTNAME" in worker
    beat = healthcheck_command(service("beat"))
    schedule = role_command("beat")[role_command("beat").index("--schedule") + 1]
    assert f"/app/{Path(schedule).parent}" in beat and Path(schedule).name in beat


# --- Prometheus and Grafana ----------------------------------------------------------

def documented_metrics() -> dict[str, tuple[str, set[str]]]:
    rows = re.findall(
        r"^\| `(conflictdesk_\w+)` \| (\w+) \|([^|]*)\|", (DEPLOY / "prometheus" / "README.md").read_text(), re.M
    )
    return {name: (kind, set(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}


def dashboard() -> dict:
    return json.loads((DEPLOY / "grafana" / "conflictdesk-dashboard.json").read_text())


def dashboard_exprs() -> list[str]:
    board = dashboard()
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for var in board["templating"]["list"]:
        query = var.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
    return exprs


def series_base(name: str, metrics: dict) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and metrics.get(base, ("",))[0] == "histogram":
            return base
    return name


def test_prometheus_scrapes_the_web_roles_metrics():
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = config["scrape_configs"]
    assert [j["job_name"] for j in jobs] == ["conflictdesk"]
    assert jobs[0]["metrics_path"] == "/metrics"
    web_port = role_command("web")[role_command("web").index("--bind") + 1].rsplit(":", 1)[1]
    assert jobs[0]["static_configs"][0]["targets"] == [f"web:{web_port}"]
    assert "web" in dotenv_example()["DJANGO_ALLOWED_HOSTS"].split(","), "Prometheus's Host header must be allowed"
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in service("prometheus")["volumes"]
    # With DJANGO_DEBUG=0 /metrics wants the bearer token the settings read; compose hands it over as a secret file.
    auth = jobs[0]["authorization"]
    assert auth["type"] == "Bearer"
    secret = Path(auth["credentials_file"])
    assert secret.parent == Path("/run/secrets") and secret.name in service("prometheus")["secrets"]
    token_var = compose()["secrets"][secret.name]["environment"]
    assert token_var in settings_env_names()
    assert [v for v, _, _ in interpolations(service("web")["environment"][token_var])] == [token_var]


def test_dashboard_queries_only_documented_metrics_and_labels():
    metrics = documented_metrics()
    assert len(metrics) >= 8, "the README table is the contract with the metrics code"
    used = set()
    for expr in dashboard_exprs():
        for name in re.findall(r"\bconflictdesk_\w+", expr):
            base = series_base(name, metrics)
            assert base in metrics, f"{name} in {expr!r} is not a documented metric"
            used.add(base)
        for name, selector in re.findall(r"\b(conflictdesk_\w+)\{([^}]*)\}", expr):
            labels = set(re.findall(r"(\w+)\s*=~?", selector))
            assert labels <= metrics[series_base(name, metrics)][1], f"{expr!r}"
        for grouping in re.findall(r"\bby \(([^)]*)\)", expr):
            names = set(re.findall(r"\bconflictdesk_\w+", expr))
            allowed = set.union(*(metrics[series_base(n, metrics)][1] for n in names)) | {"le"}
            assert {g.strip() for g in grouping.split(",")} <= allowed, f"{expr!r}"
    assert used == set(metrics), f"documented but not on the dashboard: {sorted(set(metrics) - used)}"


def test_documented_metrics_are_the_ones_the_metrics_code_exports():
    source = (REPO / "conflictdesk" / "metrics.py").read_text()
    families = {name: kind for kind, name in re.findall(r'(Counter|Gauge|Histogram)MetricFamily\(\s*"(conflictdesk_\w+)"', source)}
    by_site = re.findall(r'_by_site\("(conflictdesk_\w+)"', source)
    exported = {(f"{n}_total" if k == "Counter" else n): k.lower() for n, k in families.items()}
    exported |= {n: "gauge" for n in by_site}
    assert {n: k for n, (k, _) in documented_metrics().items()} == exported


def test_dashboard_shows_latency_quantiles_per_site():
    exprs = dashboard_exprs()
    for q in ("0.5", "0.95", "0.99"):
        assert any(
            re.search(rf"histogram_quantile\({q}, sum by \(le, site\) \(rate\(conflictdesk_sync_latency_seconds_bucket", e)
            for e in exprs
        ), q


def test_dashboard_is_importable_grafana_json():
    board = dashboard()
    assert board["uid"] and board["title"] and isinstance(board["schemaVersion"], int)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in board["templating"]["list"]}
    text = json.dumps(board["panels"])
    for var in set(re.findall(r"\$\{?(\w+)\}?", text)):
        assert var in variables, f"${var} is not a dashboard variable"
    for panel in board["panels"]:
        assert panel["type"] in {"timeseries", "stat"} and panel["targets"]
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert [t["refId"] for t in panel["targets"]] == [chr(65 + i) for i in range(len(panel["targets"]))]


def test_grafana_provisioning_finds_the_dashboard_and_prometheus():
    grafana = service("grafana")
    mount = next(v for v in grafana["volumes"] if v.startswith("./grafana/conflictdesk-dashboard.json:"))
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/conflictdesk.yml").read_text())
    assert Path(mount.split(":")[1]).parent == Path(provider["providers"][0]["options"]["path"])
    source = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    assert urlsplit(source["url"]).hostname == "prometheus" and "prometheus" in compose()["services"]
    assert source["type"] == "prometheus"
