"""The desk's own state: permission anchors and the digest mark. Clinical state lives in sync/."""
from django.db import models

from .roles import PERMISSIONS


class DeskAccess(models.Model):
    """No rows: an anchor for the desk's permissions (roles are groups of these)."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = sorted(PERMISSIONS.items())


class DigestMark(models.Model):
    """When the last e-mail digest went out, so the next one only names what is new."""

    name = models.CharField(max_length=40, unique=True, default="staff")
    sent_until = models.DateTimeField()

    def __str__(self):
        return f"{self.name} digest until {self.sent_until:%Y-%m-%d %H:%M}"
