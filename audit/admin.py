"""Audit events in admin: visible, never editable."""
from django.contrib import admin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("occurred_at", "partition", "partition_seq", "actor", "action", "outcome", "record_key")
    list_filter = ("action", "outcome", "partition")
    search_fields = ("record_key", "source_object", "destination_object")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
