"""Audit events in admin: visible, never editable."""
from django.contrib import admin

from .models import AuditEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that change only through the code that writes them (and its audit), never by hand here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "partition", "partition_seq", "actor", "action", "outcome", "record_key")
    list_filter = ("action", "outcome", "partition")
    search_fields = ("record_key", "source_object", "destination_object")
