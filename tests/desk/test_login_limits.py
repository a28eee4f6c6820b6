"""Finding 9: login rate limits live in the shared cache and count the real client behind the TLS proxy.

Per-process counters let an attacker spread guesses over the web workers;
counting the proxy's address instead of the client's lets five failures by
anyone lock every user out. Settings are loaded in a clean interpreter to see
what production gets.
"""
import os
import subprocess
import sys
import uuid

import pytest
from django.urls import reverse

from conflictdesk.desk import roles
from conflictdesk.settings import BASE_DIR

from . import factories as f

PRODUCTION = {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "x" * 50, "DJANGO_ALLOWED_HOSTS": "desk.example.org",
              "DATABASE_URL": "postgres://u:p@127.0.0.1:5432/db"}


def _production(expr: str, **env) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "CONFLICTDESK_"))}
    result = subprocess.run([sys.executable, "-c", f"import conflictdesk.settings as s; print({expr})"],
                            cwd=BASE_DIR, env={**clean, **PRODUCTION, **env}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_production_counts_failures_in_redis_not_in_each_process():
    backend = _production("s.CACHES['default']['BACKEND']", CONFLICTDESK_CACHE_URL="redis://cache.internal:6379/1")
    assert backend == "django.core.cache.backends.redis.RedisCache"
    assert _production("s.CACHES['default']['BACKEND']") == "django.core.cache.backends.redis.RedisCache"


def test_the_trusted_proxy_count_reaches_allauth_and_drf():
    assert _production("(s.ALLAUTH_TRUSTED_PROXY_COUNT, s.REST_FRAMEWORK['NUM_PROXIES'])",
                       CONFLICTDESK_TRUSTED_PROXY_COUNT="1") == "(1, 1)"
    assert _production("s.ALLAUTH_TRUSTED_PROXY_COUNT") == "0"  # no proxy named: X-Forwarded-For is not trusted


def _fail_five(client, email, **headers):
    for _ in range(5):
        client.post(reverse("account_login"), {"login": email, "password": "wrong password"}, **headers)


def test_one_client_behind_the_proxy_does_not_lock_out_the_others(client, db, settings):
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1
    f.make_user("victim@desk.test", roles.CLINICIAN)
    colleague = f.make_user("colleague@desk.test", roles.CLINICIAN)
    _fail_five(client, "victim@desk.test", HTTP_X_FORWARDED_FOR="203.0.113.9")
    response = client.post(reverse("account_login"), {"login": colleague.email, "password": f.PASSWORD},
                           HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert response.status_code == 302 and response["Location"] == reverse("mfa_authenticate")


def test_a_forged_forwarded_for_does_not_buy_new_guesses(client, db, settings):
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1
    target = f.make_user("target@desk.test", roles.CLINICIAN)
    for i in range(5):  # the proxy appends the real address; the forged part is ignored
        client.post(reverse("account_login"), {"login": target.email, "password": "wrong"},
                    HTTP_X_FORWARDED_FOR=f"10.0.0.{i}, 203.0.113.9")
    response = client.post(reverse("account_login"), {"login": target.email, "password": f.PASSWORD},
                           HTTP_X_FORWARDED_FOR="10.9.9.9, 203.0.113.9")
    assert response.status_code != 302


@pytest.mark.integration
def test_failures_are_counted_in_redis(client, db, settings):
    import redis

    url = "redis://127.0.0.1:6379/1"
    prefix = f"test-ratelimit-{uuid.uuid4().hex}"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url,
                                   "KEY_PREFIX": prefix, "TIMEOUT": 60}}
    target = f.make_user("redis-target@desk.test", roles.CLINICIAN)
    _fail_five(client, target.email)
    store = redis.Redis.from_url(url)
    try:
        assert list(store.scan_iter(f"{prefix}*"))  # the counters are in Redis, where every worker sees them
        response = client.post(reverse("account_login"), {"login": target.email, "password": f.PASSWORD})
        assert response.status_code != 302
    finally:
        for key in store.scan_iter(f"{prefix}*"):
            store.delete(key)
