"""Small helpers shared by the API views: validated filters, field errors, refusals answered by type."""
from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from conflictdesk.desk.views.util import refusal_status
from sync.actions import DecisionRefused, Invalid, Refused


def filters(serializer_class, request) -> dict:
    """Validated query parameters (400 naming the parameter at fault), absent ones left out."""
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return {k: v for k, v in serializer.validated_data.items() if v not in (None, "")}


def field_error(field: str, message: str) -> ValidationError:
    return ValidationError({field: [message]})


class AnswersRefusals:
    """A view mixin: an action's refusal becomes its HTTP answer, chosen by the refusal's type.

    ``Invalid`` is 400 (keyed by the field at fault, like a serializer's
    errors), ``Stale`` and ``Blocked`` 409, ``Unavailable`` 503. A stale
    decision names the conflict to look at now.
    """

    def handle_exception(self, exc):
        if not isinstance(exc, Refused):
            return super().handle_exception(exc)
        if isinstance(exc, Invalid) and exc.field:
            return Response({exc.field: [str(exc)]}, status=400)
        body = {"detail": str(exc)}
        if isinstance(exc, DecisionRefused.Stale):
            body["current_conflict_id"] = exc.current.pk
        return Response(body, status=refusal_status(exc))
