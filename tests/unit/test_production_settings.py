"""Production settings: `manage.py check --deploy` is clean, HSTS covers subdomains, /metrics is not plain http.

Each runs the settings in a clean interpreter with only production variables.
"""
import os
import secrets
import subprocess
import sys

from conflictdesk.settings import BASE_DIR

PRODUCTION = {"DJANGO_DEBUG": "0", "DJANGO_ALLOWED_HOSTS": "desk.example.org",
              "DATABASE_URL": "postgres://u:p@127.0.0.1:5432/db"}


def _run(args, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "CONFLICTDESK_"))}
    return subprocess.run([sys.executable, *args], cwd=BASE_DIR, capture_output=True, text=True,
                          env={**clean, **PRODUCTION, "DJANGO_SECRET_KEY": secrets.token_urlsafe(50), **env})


def _setting(expr, **env):
    result = _run(["-c", f"import conflictdesk.settings as s; print({expr})"], **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_deploy_check_is_clean():
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"])
    assert result.returncode == 0, result.stderr + result.stdout


def test_hsts_covers_subdomains():
    assert _setting("(s.SECURE_HSTS_SECONDS >= 31536000, s.SECURE_HSTS_INCLUDE_SUBDOMAINS)") == "(True, True)"


def test_metrics_is_redirected_to_https_unless_the_operator_says_the_network_is_private():
    assert _setting("any('metrics' in p for p in s.SECURE_REDIRECT_EXEMPT)") == "False"
    assert _setting("any('metrics' in p for p in s.SECURE_REDIRECT_EXEMPT)",
                    CONFLICTDESK_METRICS_PLAIN_HTTP="1") == "True"
