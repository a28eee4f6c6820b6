"""The source of a central resource: the composition version its Provenance names, fetched live from the site."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from sync import source
from sync.actions import do_view_source

from ..permissions import AUTHENTICATION, DeskRole
from ..serializers import ErrorSerializer

SourceSerializer = inline_serializer("Source", {
    "resource": serializers.CharField(help_text="Type/id asked for"),
    "provenance": serializers.CharField(help_text="Provenance/<id> followed ('' when located through the RecordLink)"),
    "via": serializers.ChoiceField(["provenance", "record_link"]),
    "site": serializers.CharField(), "ehr_id": serializers.CharField(), "version_uid": serializers.CharField(),
    "format": serializers.ChoiceField(source.FORMATS),
    "hash": serializers.CharField(help_text="SHA-256 of the composition's canonical JSON serialisation"),
    "last_synced_hash": serializers.CharField(), "last_synced_hash_of": serializers.CharField(),
    "matches_last_synced": serializers.BooleanField(allow_null=True),
    "fetched_at": serializers.DateTimeField(), "composition": serializers.JSONField(),
})
UnavailableSerializer = inline_serializer("SourceUnavailable", {
    "detail": serializers.CharField(), "last_synced_hash": serializers.CharField(),
    "last_synced_hash_of": serializers.CharField(), "version_uid": serializers.CharField(),
})


class FormatIsNotARenderer(DefaultContentNegotiation):
    """``?format=`` names the composition format here (canonical|flat), not a DRF renderer."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class SourceView(APIView):
    authentication_classes = AUTHENTICATION
    permission_classes = [DeskRole]
    desk_permissions = {"get": "view_conflicts"}
    renderer_classes = [JSONRenderer]
    content_negotiation_class = FormatIsNotARenderer

    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=list(source.FORMATS), default="canonical")],
        responses={200: SourceSerializer, 400: ErrorSerializer, 404: ErrorSerializer, 410: UnavailableSerializer,
                   503: UnavailableSerializer},
    )
    def get(self, request, resource_type: str, resource_id: str):
        """The exact composition version the resource's newest engine Provenance names, read live from its site.

        503 when the site cannot be read now, with the hash of the copy last synced; 404 without an engine
        Provenance. Every request is audited (``source.viewed``)."""
        fmt = request.query_params.get("format", "canonical")
        try:
            found = do_view_source(resource_type, resource_id, fmt=fmt, acting_user=request.user)
        except source.InvalidResourceRef as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        except source.NoProvenance as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)
        except source.SourceUnavailable as exc:
            code = status.HTTP_410_GONE if isinstance(exc, source.SourceGone) else status.HTTP_503_SERVICE_UNAVAILABLE
            return Response({"detail": str(exc), "last_synced_hash": exc.last_synced_hash,
                             "last_synced_hash_of": exc.last_synced_hash_of,
                             "version_uid": exc.located.version_uid if exc.located else ""}, status=code)
        return Response({
            "resource": found.resource, "provenance": found.provenance, "via": found.via, "site": found.site,
            "ehr_id": found.ehr_id, "version_uid": found.version_uid, "format": found.format, "hash": found.hash,
            "last_synced_hash": found.last_synced_hash, "last_synced_hash_of": found.last_synced_hash_of,
            "matches_last_synced": found.matches_last_synced, "fetched_at": found.fetched_at,
            "composition": found.content,
        })
