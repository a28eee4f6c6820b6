"""Loaded first (``-p tests.dev_env`` in pyproject's addopts), before pytest-django reads the settings.

Settings are production unless DJANGO_DEBUG says otherwise; the tests run
against the local development servers with the development defaults, so they
ask for them here, before any conftest (pytest-django imports the settings
earlier than conftests load). An explicit DJANGO_DEBUG in the environment wins.
Processes the tests start inherit them (tests/harness/engine.py sets DJANGO_DEBUG too).
"""
import os

os.environ.setdefault("DJANGO_DEBUG", "1")
# Rate-limit counters per test process: suites run side by side on one machine, all from
# 127.0.0.1, and must not lock each other out. The Redis cache has its own test (test_login_limits).
os.environ.setdefault("CONFLICTDESK_CACHE_URL", "locmem://")
