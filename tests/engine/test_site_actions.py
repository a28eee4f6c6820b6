"""Sites change only through their actions, from every door (API, admin, command line), audited with the actor."""
from __future__ import annotations

import pytest
from django.contrib.admin.sites import site as admin_site
from django.contrib.auth.models import User
from django.test import RequestFactory

from audit.models import AuditEvent
from sync import models
from sync.actions import SiteRefused, do_create_site, do_delete_site, do_update_site
from sync.models import Site
from tests.desk import factories as f

NEW = {"name": "site9", "openehr_base_url": "http://site9.test/v1", "local_demo": True}


def guard_changes():
    return list(AuditEvent.objects.filter(action="site.fidelity_guard").order_by("partition_seq"))


def test_it_audits_each_change_of_guard_mode_with_the_actor(db):
    admin = f.make_user("adam@desk.test", f.ROLE_USERS["admin"])
    site = do_create_site(NEW, acting_user=admin)
    assert guard_changes() == []  # created at the default (strict): nothing changed
    do_update_site(site, {"fidelity_guard": Site.GuardMode.RECORD_ONLY}, acting_user=admin)
    do_update_site(site, {"poll_interval_seconds": 5}, acting_user=admin)  # another field: no guard event
    do_update_site(site, {"fidelity_guard": Site.GuardMode.STRICT}, acting_user=admin)
    events = guard_changes()
    assert [(e.detail["from"], e.detail["to"]) for e in events] == [("strict", "record_only"),
                                                                    ("record_only", "strict")]
    assert {e.actor for e in events} == {"adam@desk.test"} and {e.partition for e in events} == {"desk"}
    assert all(e.detail["site_id"] == site.pk for e in events)
    assert AuditEvent.objects.filter(action="site.update").count() == 3


def test_a_site_created_record_only_is_a_change_of_mode_and_a_command_names_itself(db):
    site = do_create_site({**NEW, "fidelity_guard": Site.GuardMode.RECORD_ONLY}, acting_user=None)
    [event] = guard_changes()
    assert (event.detail["from"], event.detail["to"]) == ("strict", "record_only")
    assert event.actor.startswith("cli:") and event.detail["site_id"] == site.pk


def test_a_site_with_synced_data_is_refused_and_nothing_is_audited(db):
    conflict = f.make_conflict()
    with pytest.raises(SiteRefused.InUse, match="enabled=false"):
        do_delete_site(conflict.record_link.site, acting_user=None)
    assert Site.objects.filter(pk=conflict.record_link.site_id).exists()
    assert not AuditEvent.objects.filter(action="site.delete").exists()


@pytest.fixture
def staff(db):
    return User.objects.create_superuser("root", "root@desk.test", "pw")


def admin_request(user):
    request = RequestFactory().post("/admin/")
    request.user = user
    return request


def test_the_admin_changes_a_site_through_the_action_naming_the_staff_member(staff):
    site = Site.objects.create(name="site7", openehr_base_url="http://site7.test/v1", local_demo=True)
    model_admin = admin_site._registry[Site]
    form_class = model_admin.get_form(admin_request(staff), site, change=True)
    unchanged = {k: getattr(site, k) for k in ("name", "display_name", "openehr_base_url", "credentials_ref",
                                               "poll_interval_seconds")}
    form = form_class(instance=site, data={**unchanged, "enabled": "on", "local_demo": "on",
                                           "fidelity_guard": "record_only", "template_ids": "[]",
                                           "demographics_source": "none"})
    assert form.is_valid(), form.errors
    model_admin.save_model(admin_request(staff), form.save(commit=False), form, change=True)
    [event] = guard_changes()
    assert event.actor == "root@desk.test" and event.detail["to"] == "record_only"
    assert "fidelity_guard" in AuditEvent.objects.get(action="site.update").detail["fields"]
    assert Site.objects.get(pk=site.pk).fidelity_guard == "record_only"


@pytest.mark.parametrize("model", [models.Cursor, models.PatientLink, models.RecordLink, models.ChangeEvent,
                                   models.SyncRun, models.DeadLetter, models.Conflict, models.Resolution])
def test_the_engine_rows_are_read_only_in_the_admin(staff, model):
    model_admin, request = admin_site._registry[model], admin_request(staff)
    assert model_admin.has_view_permission(request)
    assert not (model_admin.has_add_permission(request) or model_admin.has_change_permission(request)
                or model_admin.has_delete_permission(request))
