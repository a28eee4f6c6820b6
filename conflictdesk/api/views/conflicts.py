"""Conflicts: the queue and one conflict whole; a decision through the desk's own service."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from conflictdesk.desk import queries, services
from conflictdesk.desk.access import get_conflict_for_user
from sync.mapping import MappingError

from ..serializers import (ConflictDetailSerializer, ConflictFilterSerializer, ConflictSerializer, DecisionSerializer,
                           ErrorSerializer, ResolutionSerializer)
from .util import field_error, filters
from ..permissions import AUTHENTICATION, DeskRole

MovedSerializer = inline_serializer("VersionsMoved", {
    "detail": serializers.CharField(), "current_conflict_id": serializers.IntegerField()})


@extend_schema_view(list=extend_schema(parameters=[ConflictFilterSerializer]))
class ConflictViewSet(viewsets.ReadOnlyModelViewSet):
    """Open conflicts by default (``status=all`` for every one); the detail carries both versions whole."""

    authentication_classes = AUTHENTICATION
    permission_classes = [DeskRole]
    desk_permissions = {"list": "view_conflicts", "retrieve": "view_conflicts", "decide": "decide_conflict"}

    def get_queryset(self):
        return queries.conflicts(filters(ConflictFilterSerializer, self.request))

    def get_serializer_class(self):
        return ConflictSerializer if self.action == "list" else ConflictDetailSerializer

    def get_object(self):
        conflict = get_conflict_for_user(self.request.user, self.kwargs["pk"])
        self.check_object_permissions(self.request, conflict)
        return conflict

    @extend_schema(request=DecisionSerializer,
                   responses={201: ResolutionSerializer, 400: None, 409: MovedSerializer, 503: ErrorSerializer})
    @action(detail=True, methods=["post"])
    def decide(self, request, pk=None):
        """Keep site, keep central or merge: the desk's rules (reason required, refused if a side moved)."""
        conflict = self.get_object()
        form = DecisionSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            decision = services.decide_conflict(conflict, user=request.user, choice=data["choice"],
                                                reason=data["reason"], field_choices=data["field_choices"],
                                                seen=dict(data["seen"]))
        except services.VersionsMoved as moved:
            return Response({"detail": f"not applied: {moved}", "current_conflict_id": moved.current.pk},
                            status=status.HTTP_409_CONFLICT)
        except services.DecisionRefused as refused:
            message = str(refused)
            if message.startswith("choose a side"):
                raise field_error("field_choices", message) from refused
            if message.startswith("a reason"):
                raise field_error("reason", message) from refused
            code = status.HTTP_503_SERVICE_UNAVAILABLE if "could not read" in message else status.HTTP_409_CONFLICT
            return Response({"detail": message}, status=code)
        except MappingError as exc:
            return Response({"detail": f"the site version no longer maps ({exc.__class__.__name__}); "
                                       "decide in the desk"}, status=status.HTTP_409_CONFLICT)
        body = ResolutionSerializer(decision.resolution, context={"run": decision.run}).data
        return Response(body, status=status.HTTP_201_CREATED)
