"""Settings: production refuses unsafe configuration; Celery keeps work safe."""
import os
import subprocess
import sys

import pytest
from django.conf import settings

from conflictdesk.settings import BASE_DIR


def _load_settings(env: dict) -> subprocess.CompletedProcess:
    """Import the settings module in a clean interpreter with the given environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", "import conflictdesk.settings as s; print(s.SESSION_COOKIE_SECURE, s.DEBUG)"],
        cwd=BASE_DIR,
        env=clean,
        capture_output=True,
        text=True,
    )


def test_production_refuses_to_start_without_secret_key():
    result = _load_settings({"DJANGO_DEBUG": "0", "DJANGO_ALLOWED_HOSTS": "desk.example.org"})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr


def test_production_refuses_to_start_without_allowed_hosts():
    result = _load_settings({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "x" * 50})
    assert result.returncode != 0
    assert "DJANGO_ALLOWED_HOSTS is required" in result.stderr


def test_production_refuses_to_start_without_database_url():
    result = _load_settings(
        {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "x" * 50, "DJANGO_ALLOWED_HOSTS": "desk.example.org"}
    )
    assert result.returncode != 0
    assert "DATABASE_URL is required" in result.stderr


def test_production_settings_turn_on_secure_cookies():
    result = _load_settings(
        {
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "x" * 50,
            "DJANGO_ALLOWED_HOSTS": "desk.example.org",
            "DATABASE_URL": "postgres://u:p@127.0.0.1:5432/db",
        }
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]


def test_bad_boolean_is_a_clear_error():
    result = _load_settings({"DJANGO_DEBUG": "maybe"})
    assert result.returncode != 0
    assert "DJANGO_DEBUG must be a boolean" in result.stderr


def test_celery_is_configured_for_no_lost_work():
    assert settings.CELERY_TASK_ACKS_LATE is True
    assert settings.CELERY_TASK_REJECT_ON_WORKER_LOST is True
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
    assert settings.CELERY_ACCEPT_CONTENT == ["json"]
    assert settings.CELERY_TASK_SERIALIZER == "json"
    # the visibility timeout must outlast the whole retry schedule
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] > sum(settings.CONFLICTDESK_RETRY_DELAYS)


def test_retry_schedule_is_exact():
    assert settings.CONFLICTDESK_RETRY_DELAYS == (1, 2, 4, 8, 16, 32)


def test_csrf_and_session_protection_on():
    assert "django.middleware.csrf.CsrfViewMiddleware" in settings.MIDDLEWARE
    assert settings.SESSION_COOKIE_HTTPONLY is True
    assert settings.SESSION_SAVE_EVERY_REQUEST is True


@pytest.mark.django_db
def test_every_page_requires_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


@pytest.mark.django_db
def test_self_signup_is_closed(client):
    response = client.get("/accounts/signup/")
    assert b"Sign Up Closed" in response.content or response.status_code in (403, 404)


def test_http_libraries_do_not_log_urls():
    """Search URLs can carry identifiers: httpx must not log them at INFO."""
    import logging

    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
    assert logging.getLogger("httpcore").getEffectiveLevel() >= logging.WARNING


def test_production_serves_static_files_and_exempts_probes_from_ssl_redirect():
    result = subprocess.run(
        [sys.executable, "-c",
         "import conflictdesk.settings as s; print(s.STORAGES['staticfiles']['BACKEND']); print(s.SECURE_REDIRECT_EXEMPT)"],
        cwd=BASE_DIR,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")},
             "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "x" * 50, "DJANGO_ALLOWED_HOSTS": "desk.example.org",
             "DATABASE_URL": "postgres://u:p@127.0.0.1:5432/db"},
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "whitenoise" in result.stdout
    # /metrics is redirected too unless the operator says the scrape network is private
    # (CONFLICTDESK_METRICS_PLAIN_HTTP; tests/unit/test_production_settings.py).
    assert "healthz" in result.stdout and "metrics" not in result.stdout


def test_it_is_production_unless_debug_is_asked_for():
    """Finding 7: a plain start (a bare `docker run`) gets production settings, never the dev key."""
    refused = _load_settings({})
    assert refused.returncode != 0 and "ImproperlyConfigured" in refused.stderr
    result = _load_settings({"DJANGO_SECRET_KEY": "x" * 50, "DJANGO_ALLOWED_HOSTS": "desk.example.org",
                             "DATABASE_URL": "postgres://u:p@127.0.0.1:5432/db"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]


def test_the_image_runs_with_debug_off():
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    assert 'DJANGO_DEBUG=0' in dockerfile.split("FROM ${PYTHON_IMAGE} AS runtime")[1].split("RUN ")[0]
