"""Dead letters: list and detail (attempts, payload), re-drive and discard through the same actions as the desk's."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from conflictdesk.desk import queries
from conflictdesk.desk.access import get_dead_letter_for_user
from sync.actions import RedriveFilter, do_discard_dead_letter, do_redrive_dead_letter, do_redrive_dead_letters
from sync.models import DeadLetter

from ..serializers import (BulkRedriveSerializer, DeadLetterDetailSerializer, DeadLetterFilterSerializer,
                           DeadLetterSerializer, DiscardSerializer, ErrorSerializer, RedriveFilterSerializer,
                           SyncRunSerializer)
from .util import AnswersRefusals, filters
from ..permissions import AUTHENTICATION, DeskRole


@extend_schema_view(list=extend_schema(parameters=[DeadLetterFilterSerializer]))
class DeadLetterViewSet(AnswersRefusals, viewsets.ReadOnlyModelViewSet):
    """Open dead letters by default (``status=all`` for every one)."""

    authentication_classes = AUTHENTICATION
    permission_classes = [DeskRole]
    desk_permissions = {"list": "view_deadletters", "retrieve": "view_deadletters",
                        "redrive": "work_deadletters", "discard": "work_deadletters",
                        "redrive_matching": "work_deadletters"}

    def get_queryset(self):
        given = filters(DeadLetterFilterSerializer, self.request)
        status_ = given.pop("status", DeadLetter.Status.OPEN)
        return queries.dead_letters(RedriveFilter(**given), status_).select_related("closed_by")

    def get_serializer_class(self):
        return DeadLetterSerializer if self.action == "list" else DeadLetterDetailSerializer

    def get_object(self):
        letter = get_dead_letter_for_user(self.request.user, self.kwargs["pk"])
        self.check_object_permissions(self.request, letter)
        return letter

    @extend_schema(request=None, responses={202: SyncRunSerializer, 409: ErrorSerializer})
    @action(detail=True, methods=["post"])
    def redrive(self, request, pk=None):
        """Back into the workflow (from detection for content causes); the run is returned."""
        run = do_redrive_dead_letter(self.get_object(), acting_user=request.user)
        return Response(SyncRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(operation_id="dead_letters_redrive_matching", request=RedriveFilterSerializer,
                   responses={202: BulkRedriveSerializer, 400: ErrorSerializer,
                              409: ErrorSerializer})
    @action(detail=False, methods=["post"], url_path="redrive")
    def redrive_matching(self, request):
        """Every open dead letter the filter matches (site, rule, cause, time range) back into the workflow,
        as one action with one audit event listing the runs; 409 when none matches."""
        form = RedriveFilterSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        runs = do_redrive_dead_letters(RedriveFilter(**form.validated_data), acting_user=request.user)
        letters = DeadLetter.objects.filter(run__in=runs).order_by("created_at", "pk").values_list("pk", flat=True)
        body = {"count": len(runs), "dead_letter_ids": list(letters), "run_ids": [run.pk for run in runs]}
        return Response(BulkRedriveSerializer(body).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=DiscardSerializer, responses={200: DeadLetterDetailSerializer, 409: ErrorSerializer})
    @action(detail=True, methods=["post"])
    def discard(self, request, pk=None):
        """Close for good, with a reason (required)."""
        letter = self.get_object()
        form = DiscardSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        letter = do_discard_dead_letter(letter, acting_user=request.user, reason=form.validated_data["reason"])
        return Response(DeadLetterDetailSerializer(get_dead_letter_for_user(request.user, letter.pk)).data)
