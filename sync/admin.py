"""Admin views of the engine's state. Read-mostly: history rows are not editable."""
from django.contrib import admin

from . import models


@admin.register(models.Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = ("name", "display_name", "openehr_base_url", "poll_interval_seconds", "enabled", "fidelity_guard")
    list_filter = ("enabled", "fidelity_guard")

    def save_model(self, request, obj, form, change):
        obj.audit_actor = request.user.email or request.user.get_username()  # guard-mode audit (Site.save)
        super().save_model(request, obj, form, change)


@admin.register(models.Cursor)
class CursorAdmin(admin.ModelAdmin):
    list_display = ("source", "position", "last_polled_at", "updated_at")


@admin.register(models.PatientLink)
class PatientLinkAdmin(admin.ModelAdmin):
    list_display = ("id", "site", "ehr_id", "fhir_patient_id", "created_at")
    list_filter = ("site",)
    search_fields = ("ehr_id", "fhir_patient_id")


@admin.register(models.RecordLink)
class RecordLinkAdmin(admin.ModelAdmin):
    list_display = ("id", "site", "versioned_object_uid", "openehr_version_uid", "canonical_hash", "last_synced_at")
    list_filter = ("site", "deleted")
    search_fields = ("versioned_object_uid",)


class ReadOnlyAdmin(admin.ModelAdmin):
    """History is changed only through the engine, never by hand in admin."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(models.ChangeEvent)
class ChangeEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "direction", "source", "source_object_id", "version_number", "status", "detected_at")
    list_filter = ("direction", "status", "source")
    search_fields = ("source_object_id",)


class RunAttemptInline(admin.TabularInline):
    model = models.RunAttempt
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(models.SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "direction", "site", "record_key", "step", "status", "attempt", "updated_at")
    list_filter = ("direction", "status", "step", "site")
    inlines = [RunAttemptInline]


@admin.register(models.DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = ("id", "cause", "step", "rule", "status", "created_at")
    list_filter = ("cause", "status")


@admin.register(models.Conflict)
class ConflictAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "record_link", "resource_type", "status", "opened_at")
    list_filter = ("kind", "status")


@admin.register(models.Resolution)
class ResolutionAdmin(ReadOnlyAdmin):
    list_display = ("id", "conflict", "choice", "decided_by", "decided_at")
