"""Loaded first (``-p tests.dev_env`` in pyproject's addopts), before pytest-django reads the settings.

Settings are production unless DJANGO_DEBUG says otherwise; the tests run
against the local development servers with the development defaults, so they
ask for them here, before any conftest (pytest-django imports the settings
earlier than conftests load). An explicit DJANGO_DEBUG in the environment wins.
Processes the tests start inherit it (tests/harness/engine.py sets it too).
"""
import os

os.environ.setdefault("DJANGO_DEBUG", "1")
