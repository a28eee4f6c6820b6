"""Finding 3: a site's settings cannot make the engine send a secret anywhere.

The attack: an admin-role account (or a stolen token) PATCHes a site with
``credentials_ref=DATABASE_URL`` and a URL it controls; the next poll would
send the database credentials there as Basic auth. Credentials may only come
from ``CONFLICTDESK_SITE_CREDENTIALS_*`` variables and URLs only go to the
operator's allow-list, at every door (API, admin, action) and again at use.
"""
from __future__ import annotations

import pytest
from django.contrib.admin.sites import site as admin_site
from django.contrib.auth.models import User
from django.test import RequestFactory
from knox.models import AuthToken
from rest_framework.test import APIClient

from sync.actions import SiteRefused, do_create_site, do_update_site
from sync.models import Site
from sync.workflow import services
from tests.desk import factories as f

ATTACKER = "https://attacker.example/ehrbase/rest/openehr/v1"


@pytest.fixture
def allow(settings):
    settings.CONFLICTDESK_SITE_URL_ALLOWLIST = ["http://*.test", "https://cdr.hospital.example:8443"]
    return settings


@pytest.fixture
def admin_api(db, allow):
    user = f.make_user("adam@desk.test", f.ROLE_USERS["admin"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(user)[1]}")
    return client


@pytest.mark.parametrize("ref", ["DATABASE_URL", "DJANGO_SECRET_KEY", "CONFLICTDESK_METRICS_TOKEN", "PATH",
                                 "CONFLICTDESK_SITE_CREDENTIALS_", "conflictdesk_site_credentials_site1",
                                 "CONFLICTDESK_SITE_CREDENTIALS_A B"])
def test_it_refuses_a_credentials_ref_outside_the_prefix_over_the_api(admin_api, ref):
    site = f.make_site("site1")
    response = admin_api.patch("/api/v1/sites/site1/", {"credentials_ref": ref}, format="json")
    assert response.status_code == 400 and "credentials_ref" in response.json()
    assert Site.objects.get(pk=site.pk).credentials_ref == ""


@pytest.mark.parametrize("url", [ATTACKER, "http://127.0.0.1:5432/", "https://cdr.hospital.example/v1",
                                 "ftp://site1.test/v1", "http://user:pw@site1.test/v1", "http://site1.test.attacker.example/v1"])
def test_it_refuses_a_site_url_off_the_allow_list_over_the_api(admin_api, url):
    site = f.make_site("site1")
    response = admin_api.patch("/api/v1/sites/site1/", {"openehr_base_url": url}, format="json")
    assert response.status_code == 400 and "openehr_base_url" in response.json()
    assert Site.objects.get(pk=site.pk).openehr_base_url == site.openehr_base_url
    response = admin_api.post("/api/v1/sites/", {"name": "site8", "openehr_base_url": url}, format="json")
    assert response.status_code == 400 and not Site.objects.filter(name="site8").exists()


def test_it_accepts_the_prefix_and_an_allowed_url(admin_api):
    f.make_site("site1")
    response = admin_api.patch("/api/v1/sites/site1/", {"credentials_ref": "CONFLICTDESK_SITE_CREDENTIALS_SITE1",
                                                        "openehr_base_url": "https://cdr.hospital.example:8443/v1"},
                               format="json")
    assert response.status_code == 200


def test_the_action_refuses_whatever_door_calls_it(allow, db):
    with pytest.raises(SiteRefused.Invalid):
        do_create_site({"name": "site8", "openehr_base_url": ATTACKER}, acting_user=None)
    site = f.make_site("site1")
    with pytest.raises(SiteRefused.Invalid):
        do_update_site(site, {"credentials_ref": "DATABASE_URL"}, acting_user=None)


def test_the_admin_form_refuses_a_foreign_credentials_ref_and_url(allow, db):
    staff = User.objects.create_superuser("root", "root@desk.test", "pw")
    site = f.make_site("site1")
    request = RequestFactory().post("/admin/")
    request.user = staff
    model_admin = admin_site._registry[Site]
    form = model_admin.get_form(request, site, change=True)(instance=site, data={
        "name": "site1", "display_name": "", "openehr_base_url": ATTACKER, "credentials_ref": "DATABASE_URL",
        "poll_interval_seconds": 30, "enabled": "on", "fidelity_guard": "strict", "template_ids": "[]"})
    assert not form.is_valid()
    assert {"openehr_base_url", "credentials_ref"} <= set(form.errors)


def test_the_engine_never_reads_a_foreign_variable_even_if_the_row_was_changed_behind_the_actions(allow, db,
                                                                                                   monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://app:s3cret@db.internal/conflictdesk")
    site = f.make_site("site1")
    Site.objects.filter(pk=site.pk).update(credentials_ref="DATABASE_URL", local_demo=False)
    with pytest.raises(services.SiteConfigError):
        services.site_auth(Site.objects.get(pk=site.pk))


def test_the_engine_never_connects_to_a_url_off_the_allow_list(allow, db, monkeypatch):
    monkeypatch.setenv("CONFLICTDESK_SITE_CREDENTIALS_SITE1", "engine:pw")
    site = f.make_site("site1")
    Site.objects.filter(pk=site.pk).update(openehr_base_url=ATTACKER,
                                           credentials_ref="CONFLICTDESK_SITE_CREDENTIALS_SITE1")
    with pytest.raises(services.SiteConfigError):
        services._default_services().openehr(Site.objects.get(pk=site.pk))


def test_the_engine_uses_a_prefixed_credential(allow, db, monkeypatch):
    monkeypatch.setenv("CONFLICTDESK_SITE_CREDENTIALS_SITE1", "engine:pw:with:colons")
    site = f.make_site("site1")
    Site.objects.filter(pk=site.pk).update(credentials_ref="CONFLICTDESK_SITE_CREDENTIALS_SITE1")
    assert services.site_auth(Site.objects.get(pk=site.pk)) == ("engine", "pw:with:colons")
