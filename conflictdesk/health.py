"""Liveness for container health checks and load balancers: no database, no data, no login.

It answers as long as the WSGI process serves requests; readiness of the
dependencies (PostgreSQL, broker, CDRs, HAPI) is the desk's health page.
"""
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})
