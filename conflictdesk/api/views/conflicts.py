"""Conflicts: the queue and one conflict whole; a decision through the same action as the desk's."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from conflictdesk.desk import queries
from conflictdesk.desk.access import get_conflict_for_user
from sync.actions import do_decide_conflict

from ..serializers import (ConflictDetailSerializer, ConflictFilterSerializer, ConflictSerializer, DecisionSerializer,
                           ErrorSerializer, ResolutionSerializer)
from .util import AnswersRefusals, filters
from ..permissions import AUTHENTICATION, DeskRole

StaleSerializer = inline_serializer("DecisionStale", {
    "detail": serializers.CharField(), "current_conflict_id": serializers.IntegerField()})


@extend_schema_view(list=extend_schema(parameters=[ConflictFilterSerializer]))
class ConflictViewSet(AnswersRefusals, viewsets.ReadOnlyModelViewSet):
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
                   responses={201: ResolutionSerializer, 400: None, 409: StaleSerializer, 503: ErrorSerializer})
    @action(detail=True, methods=["post"])
    def decide(self, request, pk=None):
        """Keep site, keep central or merge: the desk's rules (reason required, refused if a side moved).

        409 when the conflict closed or a side moved (with the conflict to look at now) or when the
        site version no longer maps; 503 when a server cannot be read to check the versions."""
        conflict = self.get_object()
        form = DecisionSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        decision = do_decide_conflict(conflict, acting_user=request.user, choice=data["choice"],
                                      reason=data["reason"], field_choices=data["field_choices"],
                                      seen=dict(data["seen"]))
        body = ResolutionSerializer(decision.resolution, context={"run": decision.run}).data
        return Response(body, status=status.HTTP_201_CREATED)
