"""Admin views of the engine's state: read-only, except sites, which change only through their actions.

The engine's rows (cursors, links, events, runs, dead letters, conflicts,
resolutions) change only through the engine or an audited action, never by
hand here. A site's change goes through ``sync.actions`` like the API's, with
its audit events in the same transaction.
"""
from django import forms
from django.contrib import admin

from audit.admin import ReadOnlyAdmin
from sync.actions import SiteRefused, do_create_site, do_delete_site, do_update_site
from sync.actions.sites import check_site_fields

from . import models


class SiteForm(forms.ModelForm):
    """The action's own checks, as form errors (so a refused URL or variable is shown, not a 500)."""

    class Meta:
        model = models.Site
        fields = "__all__"

    def clean(self):
        data = super().clean()
        for name in ("openehr_base_url", "credentials_ref"):
            if name in data:
                try:
                    check_site_fields({name: data[name]})
                except SiteRefused.Invalid as refused:
                    self.add_error(name, str(refused))
        return data


@admin.register(models.Site)
class SiteAdmin(admin.ModelAdmin):
    form = SiteForm
    list_display = ("name", "display_name", "openehr_base_url", "poll_interval_seconds", "enabled", "fidelity_guard")
    list_filter = ("enabled", "fidelity_guard")

    def save_model(self, request, obj, form, change):
        if change:
            do_update_site(obj, {name: form.cleaned_data[name] for name in form.changed_data}, acting_user=request.user)
        else:
            obj.pk = do_create_site(form.cleaned_data, acting_user=request.user).pk
            obj.refresh_from_db()

    def delete_model(self, request, obj):
        do_delete_site(obj, acting_user=request.user)

    def delete_queryset(self, request, queryset):
        for site in queryset:
            do_delete_site(site, acting_user=request.user)


@admin.register(models.Cursor)
class CursorAdmin(ReadOnlyAdmin):
    list_display = ("source", "position", "last_polled_at", "updated_at")


@admin.register(models.PatientLink)
class PatientLinkAdmin(ReadOnlyAdmin):
    list_display = ("id", "site", "ehr_id", "fhir_patient_id", "created_at")
    list_filter = ("site",)
    search_fields = ("ehr_id", "fhir_patient_id")


@admin.register(models.RecordLink)
class RecordLinkAdmin(ReadOnlyAdmin):
    list_display = ("id", "site", "versioned_object_uid", "openehr_version_uid", "canonical_hash", "last_synced_at")
    list_filter = ("site", "deleted")
    search_fields = ("versioned_object_uid",)


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
