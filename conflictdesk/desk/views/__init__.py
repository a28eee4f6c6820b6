"""Desk views: thin wrappers over access checks, queries and services (one module per area)."""
from .home import home  # noqa: F401  (conflictdesk/urls.py names it)
