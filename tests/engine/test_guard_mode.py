"""The site's guard mode: every change goes through Site.save and is audited there, naming the actor."""
from __future__ import annotations

from audit.models import AuditEvent
from conflictdesk.api.services import do_create_site, do_update_site
from sync.models import Site
from tests.desk import factories as f


def changes():
    return list(AuditEvent.objects.filter(action="site.fidelity_guard").order_by("partition_seq"))


def test_it_audits_a_mode_change_made_through_the_api_with_the_actor(db):
    admin = f.make_user("adam@desk.test", f.ROLE_USERS["admin"])
    site = do_create_site({"name": "site9", "openehr_base_url": "http://site9.test/v1", "local_demo": True}, user=admin)
    assert changes() == []  # created at the default (strict): nothing changed
    do_update_site(site, {"fidelity_guard": Site.GuardMode.RECORD_ONLY}, user=admin)
    do_update_site(site, {"poll_interval_seconds": 5}, user=admin)  # another field: no guard event
    do_update_site(site, {"fidelity_guard": Site.GuardMode.STRICT}, user=admin)
    events = changes()
    assert [(e.detail["from"], e.detail["to"]) for e in events] == [("strict", "record_only"), ("record_only", "strict")]
    assert {e.actor for e in events} == {"adam@desk.test"} and {e.partition for e in events} == {"desk"}
    assert all(e.detail["site_id"] == site.pk for e in events)


def test_a_site_created_record_only_is_audited_and_a_direct_save_names_the_process(db):
    site = Site.objects.create(name="site8", openehr_base_url="http://site8.test/v1", local_demo=True,
                               fidelity_guard=Site.GuardMode.RECORD_ONLY)
    site.fidelity_guard = Site.GuardMode.STRICT
    site.save()
    events = changes()
    assert [(e.detail["from"], e.detail["to"]) for e in events] == [("strict", "record_only"), ("record_only", "strict")]
    assert all(e.actor.startswith("worker@") and e.actor_kind == "system" for e in events)


def test_the_admin_names_the_staff_member(db):
    from django.contrib.auth.models import User

    staff = User.objects.create_superuser("root", "root@desk.test", "pw")
    site = Site.objects.create(name="site7", openehr_base_url="http://site7.test/v1", local_demo=True)
    from django.contrib.admin.sites import site as admin_site

    model_admin = admin_site._registry[Site]
    request = type("R", (), {"user": staff})()
    site.fidelity_guard = Site.GuardMode.RECORD_ONLY
    model_admin.save_model(request, site, form=None, change=True)
    [event] = changes()
    assert event.actor == "root@desk.test" and event.detail["to"] == "record_only"
