"""Per-source health: the same figures as the desk's dashboard."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from conflictdesk.desk import health

from ..serializers import SourceHealthSerializer
from ..permissions import AUTHENTICATION, DeskRole


class HealthView(APIView):
    authentication_classes = AUTHENTICATION
    permission_classes = [DeskRole]
    desk_permissions = {"get": "view_health"}

    @extend_schema(responses=SourceHealthSerializer(many=True))
    def get(self, request):
        """Each site and the central server: last poll, lag, backlog, dead letters, open conflicts."""
        return Response(SourceHealthSerializer(health.dashboard(), many=True).data)
