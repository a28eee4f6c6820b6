"""WSGI entry point for ConflictDesk."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conflictdesk.settings")
application = get_wsgi_application()
