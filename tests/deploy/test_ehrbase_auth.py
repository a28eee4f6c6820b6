"""EHRbase behind basic auth (deploy/ehrbase.sh's default, the demo's and compose's): nobody without the
credentials gets in, and the engine gets in with the ones its site's credentials_ref names.

The suite's own sites run open (make services: EHRBASE_AUTH=none), so this starts a lone site 9
(port 8109, its own database ehrbase_authcheck_site9, its own run directory) with auth on, beside them.
"""
from __future__ import annotations

import os
import secrets
import subprocess

import httpx
import pytest

from sync.clients.errors import ClientError
from sync.models import Site
from sync.workflow.services import get_services
from tests.harness.engine import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE = "http://127.0.0.1:8109/ehrbase"
TEMPLATES = f"{BASE}/rest/openehr/v1/definition/template/adl1.4"


@pytest.fixture(scope="module")
def site9(tmp_path_factory):
    user, admin = f"cd-check:{secrets.token_urlsafe(18)}", f"cd-check-admin:{secrets.token_urlsafe(18)}"
    env = {**os.environ, "EHRBASE_AUTH": "basic", "EHRBASE_CREDENTIALS": user, "EHRBASE_ADMIN_CREDENTIALS": admin,
           "EHRBASE_DB_PREFIX": "ehrbase_authcheck_site",
           "CONFLICTDESK_RUN_DIR": str(tmp_path_factory.mktemp("ehrbase-auth-run"))}
    try:
        subprocess.run(["deploy/ehrbase.sh", "start", "9-9"], cwd=REPO, env=env, check=True, timeout=900)
        yield tuple(user.split(":", 1)), tuple(admin.split(":", 1))
    finally:
        subprocess.run(["deploy/ehrbase.sh", "stop"], cwd=REPO, env=env, timeout=120)


def test_a_request_without_the_credentials_is_refused(site9):
    (user, password), _admin = site9
    assert httpx.get(TEMPLATES).status_code == 401
    assert httpx.get(TEMPLATES, auth=(user, password + "x")).status_code == 401
    assert httpx.get(f"{BASE}/rest/status").status_code == 401
    assert httpx.get(TEMPLATES, auth=(user, password)).status_code == 200


def test_the_api_user_is_not_an_admin(site9):
    (user, password), (admin, admin_password) = site9
    ehr = "00000000-0000-0000-0000-000000000000"
    assert httpx.delete(f"{BASE}/rest/admin/ehr/{ehr}", auth=(user, password)).status_code == 403
    assert httpx.delete(f"{BASE}/rest/admin/ehr/{ehr}", auth=(admin, admin_password)).status_code != 403


def test_the_engine_sends_the_credentials_its_site_names(site9, db, monkeypatch):
    (user, password), _admin = site9
    monkeypatch.setenv("CONFLICTDESK_SITE_CREDENTIALS_SITE9", f"{user}:{password}")
    url = f"{BASE}/rest/openehr/v1"
    with_ref = Site.objects.create(name="site9", openehr_base_url=url,
                                   credentials_ref="CONFLICTDESK_SITE_CREDENTIALS_SITE9")
    without = Site.objects.create(name="site9open", openehr_base_url=url, local_demo=True)
    assert isinstance(get_services().openehr(with_ref).list_templates(), list)
    with pytest.raises(ClientError) as refused:
        get_services().openehr(without).list_templates()
    assert refused.value.status == 401
