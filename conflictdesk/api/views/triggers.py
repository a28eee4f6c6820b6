"""Manual triggers: sync one composition, one patient, or one site now.

Allowed to the admin (manage_sites) and the data steward (work_deadletters):
the people who run the sites and clear the queues. The request only records
and audits the trigger; detection runs on a worker through the engine.
"""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from sync.actions import do_trigger_composition, do_trigger_patient, do_trigger_site

from ..serializers import TriggerAcceptedSerializer, TriggerSerializer
from ..permissions import AUTHENTICATION, DeskRole

TRIGGER_PERMISSIONS = ("manage_sites", "work_deadletters")


class TriggerView(APIView):
    authentication_classes = AUTHENTICATION
    permission_classes = [DeskRole]
    desk_permissions = {"post": TRIGGER_PERMISSIONS}

    @extend_schema(request=TriggerSerializer, responses={202: TriggerAcceptedSerializer})
    def post(self, request):
        """``{"site"}`` polls a site; ``{"site", "composition_uid"[, "ehr_id"]}`` one composition;
        ``{"patient_link"}`` every composition of that patient's EHR."""
        form = TriggerSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        target = form.validated_data
        if target["target"] == "site":
            do_trigger_site(target["site"], acting_user=request.user)
            detail = f"detection queued for site {target['site'].name}"
        elif target["target"] == "composition":
            do_trigger_composition(target["site"], target["ehr_id"], target["vo_uid"],
                                   acting_user=request.user)
            detail = f"detection queued for composition {target['vo_uid']} at {target['site'].name}"
        else:
            do_trigger_patient(target["link"], acting_user=request.user)
            detail = f"detection queued for patient link {target['link'].pk}"
        return Response({"target": target["target"], "detail": detail}, status=status.HTTP_202_ACCEPTED)
