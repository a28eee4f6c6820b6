"""Sites: CRUD for the admin role (manage_sites)."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.response import Response

from sync.actions import do_create_site, do_delete_site, do_update_site
from sync.models import Site

from ..serializers import ErrorSerializer, SiteSerializer
from ..permissions import AUTHENTICATION, DeskRole
from .util import AnswersRefusals


@extend_schema_view(destroy=extend_schema(responses={204: None, 409: ErrorSerializer}))
class SiteViewSet(AnswersRefusals, viewsets.ModelViewSet):
    """The oncology sites the engine polls. Deleting a site that has synced data is refused: disable it."""

    queryset = Site.objects.order_by("name")
    serializer_class = SiteSerializer
    lookup_field = "name"
    authentication_classes = AUTHENTICATION
    permission_classes = [DeskRole]
    desk_permissions = {"*": "manage_sites"}

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        site = do_create_site(serializer.validated_data, acting_user=request.user)
        return Response(self.get_serializer(site).data, status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=kwargs.pop("partial", False))
        serializer.is_valid(raise_exception=True)
        site = do_update_site(serializer.instance, serializer.validated_data, acting_user=request.user)
        return Response(self.get_serializer(site).data)

    def destroy(self, request, *args, **kwargs):
        do_delete_site(self.get_object(), acting_user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
