"""Small helpers shared by the API views."""
from __future__ import annotations

from rest_framework.exceptions import ValidationError


def filters(serializer_class, request) -> dict:
    """Validated query parameters (400 naming the parameter at fault), absent ones left out."""
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return {k: v for k, v in serializer.validated_data.items() if v not in (None, "")}


def field_error(field: str, message: str) -> ValidationError:
    return ValidationError({field: [message]})
