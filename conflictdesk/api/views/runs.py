"""Sync runs with their attempts: read-only, filtered by site, status, direction and time."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets

from sync.models import SyncRun

from ..serializers import RunFilterSerializer, SyncRunSerializer
from .util import filters
from ..permissions import AUTHENTICATION, DeskRole


@extend_schema_view(list=extend_schema(parameters=[RunFilterSerializer]))
class SyncRunViewSet(viewsets.ReadOnlyModelViewSet):
    """Every run of the workflow, newest first; the checkpoint (clinical content) is never shown."""

    serializer_class = SyncRunSerializer
    authentication_classes = AUTHENTICATION
    permission_classes = [DeskRole]
    desk_permissions = {"*": "view_health"}

    def get_queryset(self):
        qs = SyncRun.objects.select_related("site", "change_event").prefetch_related("attempts")
        if self.action != "list":
            return qs
        params = filters(RunFilterSerializer, self.request)
        if "site" in params:
            qs = qs.filter(site__name=params["site"])
        if "status" in params:
            qs = qs.filter(status=params["status"])
        if "direction" in params:
            qs = qs.filter(direction=params["direction"])
        if "since" in params:
            qs = qs.filter(created_at__gte=params["since"])
        if "until" in params:
            qs = qs.filter(created_at__lt=params["until"])
        return qs.order_by("-created_at", "-pk")
