"""The audit trail, read-only: filtered events, and an export as FHIR ndjson, CSV or JSON Lines."""
from __future__ import annotations

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer

from audit.export import CONTENT_TYPES, SUFFIX, WRITERS, stream
from audit.models import AuditEvent
from conflictdesk.desk import queries

from ..serializers import AuditEventSerializer, AuditFilterSerializer
from .util import field_error, filters
from ..permissions import AUTHENTICATION, DeskRole


class ExportNegotiation(DefaultContentNegotiation):
    """``?format=`` names the export's file format here, not a DRF renderer: answer errors as JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


@extend_schema_view(list=extend_schema(parameters=[AuditFilterSerializer]))
class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """Every audit event, newest first, with the desk's filters (patient, record, site, actor, action, time)."""

    serializer_class = AuditEventSerializer
    authentication_classes = AUTHENTICATION
    permission_classes = [DeskRole]
    desk_permissions = {"*": "view_audit"}

    def get_queryset(self):
        if self.action == "retrieve":
            return AuditEvent.objects.all()
        return queries.audit_events(filters(AuditFilterSerializer, self.request))

    @extend_schema(
        parameters=[AuditFilterSerializer,
                    OpenApiParameter("format", str, enum=list(WRITERS), default="jsonl",
                                     description="fhir: R4 AuditEvent ndjson; csv; jsonl: canonical rows with hashes")],
        responses={(200, media): OpenApiResponse(OpenApiTypes.BINARY) for media in CONTENT_TYPES.values()},
    )
    @action(detail=False, methods=["get"], renderer_classes=[JSONRenderer],
            content_negotiation_class=ExportNegotiation, pagination_class=None)
    def export(self, request):
        """The filtered events oldest first, streamed; every row carries hash and prev_hash for offline checks."""
        fmt = request.query_params.get("format", "jsonl")
        if fmt not in WRITERS:
            raise field_error("format", f"one of {', '.join(WRITERS)}")
        events = self.get_queryset().order_by("occurred_at", "pk")
        response = StreamingHttpResponse(stream(events, fmt), content_type=CONTENT_TYPES[fmt])
        response["Content-Disposition"] = f'attachment; filename="audit-events.{SUFFIX[fmt]}"'
        return response
