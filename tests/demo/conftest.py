"""The demo's commands and accounts exist only in a demo: these tests run as one (DEBUG and demo mode on)."""
import pytest


@pytest.fixture(autouse=True)
def demo_mode(settings):
    settings.DEBUG = True
    settings.CONFLICTDESK_DEMO_MODE = True
