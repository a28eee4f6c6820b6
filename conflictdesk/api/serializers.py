"""Serializers: what the API shows and accepts. Validation errors name the field at fault."""
from __future__ import annotations

from rest_framework import serializers

from audit.models import AuditEvent
from conflictdesk.desk import clinical_diff, fixes
from sync.clients import ids
from sync.workflow import diff
from sync.mapping import MappingError
from sync.models import (Conflict, DeadLetter, Direction, PatientLink, RecordLink, Resolution, RunAttempt, Site,
                         SyncRun)
from sync.workflow.versions import versions_seen


class SiteSerializer(serializers.ModelSerializer):
    class Meta:
        model = Site
        fields = ["id", "name", "display_name", "openehr_base_url", "credentials_ref", "poll_interval_seconds",
                  "enabled", "local_demo", "fidelity_guard", "template_ids", "demographics_source", "mrn_system",
                  "demographics_fields", "demographics_url", "demographics_credentials_ref", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate_template_ids(self, value):
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise serializers.ValidationError("a list of template ids (non-empty strings)")
        return value

    def validate_poll_interval_seconds(self, value):
        if value < 1:
            raise serializers.ValidationError("at least 1 second")
        return value


class RunAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = RunAttempt
        fields = ["step", "number", "started_at", "finished_at", "outcome", "error_class", "error_detail",
                  "retry_after_seconds", "scheduled_delay_seconds", "worker"]


class SyncRunSerializer(serializers.ModelSerializer):
    """The run without its checkpoint (which holds clinical content)."""

    site = serializers.SlugRelatedField(slug_field="name", read_only=True)
    change_event = serializers.SerializerMethodField()
    resolution_id = serializers.IntegerField(read_only=True, allow_null=True)
    attempts = RunAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = SyncRun
        fields = ["id", "direction", "site", "record_key", "step", "status", "attempt", "next_attempt_at",
                  "created_at", "updated_at", "finished_at", "change_event", "resolution_id", "losses", "attempts"]

    def get_change_event(self, run) -> dict | None:
        event = run.change_event
        if event is None:
            return None
        return {"id": event.pk, "source": event.source, "source_object_id": event.source_object_id,
                "source_version": event.source_version, "change_type": event.change_type,
                "committed_at": event.committed_at, "detected_at": event.detected_at, "status": event.status}


class RunFilterSerializer(serializers.Serializer):
    site = serializers.SlugField(required=False, help_text="Site name.")
    status = serializers.ChoiceField(choices=SyncRun.Status.choices, required=False)
    direction = serializers.ChoiceField(choices=Direction.choices, required=False)
    since = serializers.DateTimeField(required=False, help_text="Created at or after (ISO 8601).")
    until = serializers.DateTimeField(required=False, help_text="Created before (ISO 8601).")

    def validate(self, data):
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise serializers.ValidationError({"until": "must be after since"})
        return data


class ConflictSerializer(serializers.ModelSerializer):
    site = serializers.CharField(source="record_link.site.name", read_only=True)
    record_key = serializers.CharField(source="run.record_key", read_only=True)
    patient_link_id = serializers.IntegerField(source="record_link.patient_link_id", read_only=True)
    versioned_object_uid = serializers.CharField(source="record_link.versioned_object_uid", read_only=True)
    versions_seen = serializers.SerializerMethodField(help_text="Send this back unchanged as `seen` when deciding.")

    class Meta:
        model = Conflict
        fields = ["id", "status", "kind", "site", "record_key", "patient_link_id", "versioned_object_uid",
                  "resource_type", "deleted_on", "opened_at", "closed_at", "run_id", "versions_seen",
                  "openehr_version_uid",
                  "openehr_changed_by", "openehr_changed_at", "fhir_versions", "fhir_changed_by", "fhir_changed_at"]

    def get_versions_seen(self, conflict) -> dict:
        return versions_seen(conflict)


class ConflictDetailSerializer(ConflictSerializer):
    """Both versions whole, the base, and the differing fields a merge must choose between."""

    fields_to_decide = serializers.SerializerMethodField()

    class Meta(ConflictSerializer.Meta):
        fields = ConflictSerializer.Meta.fields + ["openehr_composition", "fhir_resources", "base_content",
                                                   "fields_to_decide"]

    def get_fields_to_decide(self, conflict) -> list[dict] | None:
        try:
            return [{"id": row.field.id, "label": row.field.label, "title": row.title, "context": row.context,
                     "changed_on": row.field.changed_on}
                    for row in clinical_diff.rows(diff.compare(conflict))]
        except MappingError:
            return None  # the site version no longer maps: only keep_central/keep_site apply


class ConflictFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=[*Conflict.Status.choices, ("all", "all")], required=False,
                                     help_text="Default: open.")
    site = serializers.SlugField(required=False)
    patient = serializers.IntegerField(required=False, help_text="Patient link id.")
    type = serializers.CharField(required=False, help_text="FHIR resource type.")
    age = serializers.ChoiceField(choices=["1h", "24h", "7d", "older"], required=False)
    sort = serializers.ChoiceField(choices=["oldest", "newest", "site", "type"], required=False)


class VersionsSeenSerializer(serializers.Serializer):
    openehr = serializers.CharField()
    fhir = serializers.DictField(child=serializers.CharField(allow_null=True))


class DecisionSerializer(serializers.Serializer):
    choice = serializers.ChoiceField(choices=Resolution.Choice.choices)
    reason = serializers.CharField(help_text="Why this version is right; required, stored with the decision.")
    field_choices = serializers.DictField(
        child=serializers.ChoiceField(choices=["site", "central"]), required=False, default=dict,
        help_text="For merge: field id (from fields_to_decide) -> site | central, for every differing field.")
    seen = VersionsSeenSerializer(help_text="The conflict's versions_seen as you read it.")


class ResolutionSerializer(serializers.ModelSerializer):
    run_id = serializers.SerializerMethodField()

    class Meta:
        model = Resolution
        fields = ["id", "conflict_id", "choice", "field_choices", "decided_at", "run_id"]

    def get_run_id(self, resolution) -> int | None:
        run = self.context.get("run")
        return getattr(run, "pk", None)


class DeadLetterSerializer(serializers.ModelSerializer):
    site = serializers.CharField(source="run.site.name", read_only=True, allow_null=True, default=None)
    record_key = serializers.CharField(source="run.record_key", read_only=True)
    closed_by = serializers.SerializerMethodField()

    class Meta:
        model = DeadLetter
        fields = ["id", "status", "cause", "step", "site", "record_key", "run_id", "error", "rule", "path",
                  "created_at", "closed_at", "closed_by"]

    def get_closed_by(self, letter) -> str | None:
        return (letter.closed_by.email or letter.closed_by.get_username()) if letter.closed_by_id else None


class DeadLetterDetailSerializer(DeadLetterSerializer):
    attempts = RunAttemptSerializer(source="run.attempts", many=True, read_only=True)
    fix = serializers.SerializerMethodField(help_text="The rule in plain words, what to do, and the offending "
                                                      "value read from the payload at the path (as the desk shows).")

    class Meta(DeadLetterSerializer.Meta):
        fields = DeadLetterSerializer.Meta.fields + ["close_reason", "detail", "payload", "attempts", "fix"]

    def get_fix(self, letter) -> dict:
        explanation, offending = fixes.explain(letter), fixes.offending(letter)
        return {"what": explanation.what, "todo": explanation.todo,
                "offending": None if offending is None else {"path": offending.path, "where": offending.where,
                                                             "value": offending.value}}


class RedriveFilterSerializer(serializers.Serializer):
    """Which open dead letters: every given criterion must hold (none given: all of them)."""

    cause = serializers.ChoiceField(choices=DeadLetter.Cause.choices, required=False)
    site = serializers.SlugField(required=False, help_text='A site\'s name, or "central" for central -> site runs.')
    rule = serializers.CharField(required=False, max_length=200, help_text="The rule's start, e.g. 'rm.dv_quantity'.")
    since = serializers.DateTimeField(required=False, help_text="Dead-lettered at or after.")
    until = serializers.DateTimeField(required=False, help_text="Dead-lettered before.")

    def validate(self, data):
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise serializers.ValidationError({"until": "must be after since"})
        return data


class DeadLetterFilterSerializer(RedriveFilterSerializer):
    status = serializers.ChoiceField(choices=[*DeadLetter.Status.choices, ("all", "all")], required=False,
                                     help_text="Default: open.")


class BulkRedriveSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    dead_letter_ids = serializers.ListField(child=serializers.IntegerField())
    run_ids = serializers.ListField(child=serializers.IntegerField())


class DiscardSerializer(serializers.Serializer):
    reason = serializers.CharField(help_text="Why the dead letter is discarded; required.")


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["id", "partition", "partition_seq", "occurred_at", "actor", "actor_kind", "action", "outcome",
                  "source", "source_object", "source_version", "destination", "destination_object",
                  "destination_version", "patient_link_id", "record_key", "run_id", "source_hash", "written_hash",
                  "readback_hash", "detail", "prev_hash", "hash"]


class AuditFilterSerializer(serializers.Serializer):
    patient = serializers.IntegerField(required=False, help_text="Patient link id.")
    record = serializers.CharField(required=False, help_text="Record key (substring).")
    site = serializers.SlugField(required=False)
    actor = serializers.CharField(required=False, help_text="Actor (substring).")
    action = serializers.CharField(required=False, help_text="Action prefix, e.g. 'desk.' or 'sync.write'.")
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)

    def validate(self, data):
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise serializers.ValidationError({"until": "must be after since"})
        return data


class TriggerSerializer(serializers.Serializer):
    """Exactly one target: a site, one composition at a site, or one patient link."""

    site = serializers.SlugField(required=False, help_text="Site name: with nothing else, poll the whole site now.")
    composition_uid = serializers.CharField(required=False, help_text="Versioned object uid (a version uid is cut).")
    ehr_id = serializers.CharField(required=False,
                                   help_text="The composition's EHR; only needed if the engine has not linked it.")
    patient_link = serializers.IntegerField(required=False, help_text="PatientLink id: every composition of that EHR.")

    def validate_site(self, value):
        site = Site.objects.filter(name=value).first()
        if site is None:
            raise serializers.ValidationError(f"no site named {value!r}")
        if not site.enabled:
            raise serializers.ValidationError(f"site {value!r} is disabled")
        return site

    def validate_patient_link(self, value):
        link = PatientLink.objects.select_related("site").filter(pk=value).first()
        if link is None:
            raise serializers.ValidationError(f"no patient link {value}")
        return link

    # Both ids go into EHRbase URL paths (sync.clients.ids checks them again there): UUIDs only.
    def validate_composition_uid(self, value):
        try:
            return ids.object_uid(value.strip()).split("::", 1)[0]
        except ids.InvalidIdentifier as exc:
            raise serializers.ValidationError("a composition uid (UUID, or uuid::system::version)") from exc

    def validate_ehr_id(self, value):
        try:
            return ids.ehr_id(value.strip().lower())
        except ids.InvalidIdentifier as exc:
            raise serializers.ValidationError("an EHR id (UUID)") from exc

    def validate(self, data):
        if "patient_link" in data:
            extra = sorted(k for k in ("site", "composition_uid", "ehr_id") if k in data)
            if extra:
                raise serializers.ValidationError({extra[0]: "give either patient_link, or site (+ composition_uid)"})
            return {"target": "patient", "link": data["patient_link"]}
        if "site" not in data:
            raise serializers.ValidationError({"site": "required (or give patient_link)"})
        site = data["site"]
        if "composition_uid" not in data:
            if "ehr_id" in data:
                raise serializers.ValidationError({"composition_uid": "required with ehr_id"})
            return {"target": "site", "site": site}
        link = RecordLink.objects.filter(site=site, versioned_object_uid=data["composition_uid"]) \
            .select_related("patient_link").first()
        ehr_id = data.get("ehr_id") or (link.patient_link.ehr_id if link else None)
        if not ehr_id:
            raise serializers.ValidationError({"ehr_id": "required: the engine has not linked this composition yet"})
        return {"target": "composition", "site": site, "vo_uid": data["composition_uid"], "ehr_id": ehr_id}


class TriggerAcceptedSerializer(serializers.Serializer):
    target = serializers.ChoiceField(choices=["site", "composition", "patient"])
    detail = serializers.CharField()


class SourceHealthSerializer(serializers.Serializer):
    name = serializers.CharField(help_text='"site:<name>" or "central".')
    label = serializers.CharField()
    status = serializers.CharField(help_text="ok | degraded | stale")
    last_poll = serializers.DateTimeField(allow_null=True)
    lag_seconds = serializers.FloatField(allow_null=True, help_text="Age of the oldest unfinished change.")
    backlog = serializers.IntegerField(help_text="Changes pending or running.")
    dead_letters = serializers.IntegerField(help_text="Open dead letters.")
    open_conflicts = serializers.IntegerField()
    success_rate = serializers.FloatField(allow_null=True, help_text="Last 24 h.")
    p50 = serializers.FloatField(allow_null=True, help_text="Run latency seconds, last 24 h.")
    p95 = serializers.FloatField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
