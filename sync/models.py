"""The sync engine's state, all of it in PostgreSQL.

PostgreSQL is the source of truth: every unit of work is a row (ChangeEvent,
SyncRun) before any Celery message is sent, so the broker only carries hints
and a lost message is re-driven from here. See docs in README "How it works".
"""
from django.conf import settings
from django.db import models
from django.db.models import Q


class Direction(models.TextChoices):
    TO_FHIR = "to_fhir", "site → central"
    TO_OPENEHR = "to_openehr", "central → site"


class Site(models.Model):
    """An oncology site running an openEHR CDR (EHRbase)."""

    class GuardMode(models.TextChoices):
        STRICT = "strict", "strict (stop the run on undeclared loss)"
        RECORD_ONLY = "record_only", "record only"

    name = models.SlugField(unique=True, help_text="Short id used in identifiers, e.g. 'site1'.")
    display_name = models.CharField(max_length=200, blank=True)
    openehr_base_url = models.URLField(help_text="openEHR REST API v1 base, e.g. http://host/ehrbase/rest/openehr/v1")
    credentials_ref = models.CharField(
        max_length=100,
        blank=True,
        help_text="Name of the environment variable holding 'user:password' for this CDR; never the secret itself.",
    )
    poll_interval_seconds = models.PositiveIntegerField(default=30)
    enabled = models.BooleanField(default=True)
    local_demo = models.BooleanField(
        default=False, help_text="Allow a CDR that accepts unauthenticated requests (local demo and tests only)."
    )
    fidelity_guard = models.CharField(max_length=20, choices=GuardMode.choices, default=GuardMode.STRICT)
    template_ids = models.JSONField(
        default=list, blank=True, help_text="Templates this site accepts for writes from the centre."
    )

    class Demographics(models.TextChoices):
        NONE = "none", "none (central Patient matched by the shared EHR subject id)"
        EHR_STATUS = "ehr_status", "EHR_STATUS subject and other_details (one central Patient per site MRN)"
        FHIR = "fhir", "the site's FHIR Patient endpoint, searched by the EHR_STATUS subject (MRN)"

    demographics_source = models.CharField(max_length=20, choices=Demographics.choices, default=Demographics.NONE)
    mrn_system = models.CharField(
        max_length=200, blank=True,
        help_text="Identifier system of this site's MRNs (a URI); names the site's own central Patient.",
    )
    demographics_url = models.URLField(
        blank=True, help_text="FHIR base of the site's demographic service (source 'fhir'); on the URL allow-list."
    )
    demographics_credentials_ref = models.CharField(
        max_length=100, blank=True,
        help_text="Environment variable holding 'user:password' for the demographic service (source 'fhir').",
    )
    demographics_fields = models.JSONField(
        default=dict, blank=True,
        help_text='EHR_STATUS other_details element name per field, e.g. {"family": "Family name"}; '
                  "empty = the defaults in sync/patients/demographics.py.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name


class Cursor(models.Model):
    """How far change detection has read one source ("site:<name>" or "central").

    Moves only in the transaction that records the ChangeEvents it covers.
    """

    source = models.CharField(max_length=120, unique=True)
    position = models.DateTimeField(null=True, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    # The poll's own state (sites): single flight, back-off, and what the health page shows.
    poll_queued_at = models.DateTimeField(
        null=True, blank=True, help_text="A poll is queued or running since then; no other is sent (single flight)."
    )
    poll_failures = models.PositiveIntegerField(default=0, help_text="Consecutive failed polls (transient faults).")
    poll_retry_at = models.DateTimeField(null=True, blank=True, help_text="Backing off: next poll not before.")
    poll_error = models.CharField(max_length=100, blank=True, help_text="Error class of the last failed poll.")
    poll_ok_at = models.DateTimeField(null=True, blank=True, help_text="Last poll that reached the source.")
    deletions_checked_at = models.DateTimeField(
        null=True, blank=True, help_text="Last full pass of the (slow, paged) deletion check."
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.source} @ {self.position}"


class PatientLink(models.Model):
    """A patient's EHR at a site <-> the central FHIR Patient.

    For a site with demographics, the central Patient is the site's registration (its MRN)
    and the demographics a person checks before deciding are cached here, for the desk
    only: they never go into logs, e-mails, metrics or audit details (those carry this id).
    """

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="patient_links")
    ehr_id = models.CharField(max_length=64)
    subject_id = models.CharField(max_length=200, blank=True, help_text="EHR subject id (an identifier, not a name).")
    subject_namespace = models.CharField(max_length=200, blank=True)
    fhir_patient_id = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    # Demographics cache (sync/patients/): refreshed when the EHR_STATUS version moves.
    family_name = models.CharField(max_length=200, blank=True)
    given_names = models.CharField(max_length=200, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    sex = models.CharField(max_length=20, blank=True, help_text="FHIR administrative gender.")
    demographics_version = models.CharField(
        max_length=200, blank=True, help_text="EHR_STATUS version uid the cache and the central Patient were built from."
    )
    demographics_synced_at = models.DateTimeField(null=True, blank=True)
    # The golden Patient whose existing central records were last delivered here (sync/patients/backfill.py):
    # a MATCH to another golden record is a new link, and its records are backfilled.
    golden_backfilled = models.CharField(max_length=64, blank=True, db_default="")  # raw inserts: forward.link_patient

    class Meta:
        constraints = [models.UniqueConstraint(fields=["site", "ehr_id"], name="uniq_patient_link_site_ehr")]
        indexes = [models.Index(fields=["fhir_patient_id"]), models.Index(fields=["family_name", "birth_date"])]

    def __str__(self):
        return f"{self.site.name}:{self.ehr_id} <-> Patient/{self.fhir_patient_id}"


class RecordLink(models.Model):
    """One openEHR versioned composition <-> the FHIR resources it maps to.

    Holds the base for three-way conflict detection: the versions on both
    sides and the canonical clinical content (and its hash) last synced.
    """

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="record_links")
    patient_link = models.ForeignKey(PatientLink, on_delete=models.PROTECT, related_name="record_links")
    versioned_object_uid = models.CharField(max_length=64, help_text="Composition uid without ::system::version.")
    template_id = models.CharField(max_length=200, blank=True)
    openehr_version_uid = models.CharField(max_length=200, blank=True, help_text="Last synced composition version.")
    fhir_resources = models.JSONField(
        default=list, blank=True, help_text='[{"type": "Observation", "id": "...", "version": "2"}, ...]'
    )
    canonical_hash = models.CharField(max_length=64, blank=True)
    base_content = models.JSONField(null=True, blank=True, help_text="Clinical content last synced (the base).")
    deleted = models.BooleanField(default=False)
    last_synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["site", "versioned_object_uid"], name="uniq_record_link_site_object")
        ]

    def __str__(self):
        return f"{self.site.name}:{self.versioned_object_uid}"


class ChangeEvent(models.Model):
    """Outbox row: one detected source version. Unique per source object and version."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SYNCED = "synced"
        ECHO = "echo", "echo of our own write"
        DEAD_LETTER = "dead_letter"
        CONFLICT = "conflict"

    direction = models.CharField(max_length=20, choices=Direction.choices)
    source = models.CharField(max_length=120, help_text='"site:<name>" or "central".')
    site = models.ForeignKey(Site, on_delete=models.PROTECT, null=True, blank=True, related_name="change_events")
    source_object_id = models.CharField(max_length=200, help_text="Versioned object uid, or Type/id centrally.")
    source_version = models.CharField(max_length=200, help_text="Version uid, or FHIR versionId.")
    version_number = models.PositiveIntegerField(help_text="Orders versions of one object.")
    change_type = models.CharField(max_length=30, default="modification")
    ehr_id = models.CharField(max_length=64, blank=True)
    committed_at = models.DateTimeField(null=True, blank=True)
    detected_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "source_object_id", "source_version"], name="uniq_change_per_object_version"
            )
        ]
        indexes = [
            models.Index(fields=["source", "source_object_id", "version_number"]),
            models.Index(fields=["status"]),
        ]

    def __str__(self):
        return f"{self.source} {self.source_object_id} v{self.version_number}"


class Step(models.TextChoices):
    """The eight workflow steps, in order."""

    DETECT = "detect"
    VALIDATE_SOURCE = "validate_source", "validate against the template"
    TRANSFORM = "transform"
    VALIDATE_TARGET = "validate_target", "validate FHIR / composition"
    CHECK_CONFLICT = "check_conflict"
    WRITE = "write"
    AUDIT = "audit"
    ACKNOWLEDGE = "acknowledge"


STEP_ORDER = [step.value for step in Step]


class SyncRun(models.Model):
    """The durable workflow for one ChangeEvent (or one clinician Resolution).

    `step` is the next step to run; `checkpoint` holds each finished step's
    output so a run resumes where it stopped after any crash.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        RETRY_WAIT = "retry_wait"
        WAITING = "waiting", "waiting for an earlier version"
        DESTINATION_DOWN = "destination_down", "waiting: destination down"
        DONE = "done"
        DEAD_LETTER = "dead_letter"
        CONFLICT = "conflict"

    change_event = models.OneToOneField(
        ChangeEvent, on_delete=models.PROTECT, null=True, blank=True, related_name="run"
    )
    resolution = models.OneToOneField(
        "Resolution", on_delete=models.PROTECT, null=True, blank=True, related_name="run"
    )
    direction = models.CharField(max_length=20, choices=Direction.choices)
    site = models.ForeignKey(Site, on_delete=models.PROTECT, null=True, blank=True, related_name="runs")
    record_key = models.CharField(max_length=250, help_text="Serialises runs of one record.")
    step = models.CharField(max_length=30, choices=Step.choices, default=Step.DETECT)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    checkpoint = models.JSONField(default=dict, blank=True)
    pending_audit = models.JSONField(
        null=True, blank=True,
        help_text="Audit events of the steps committed with the plan, appended with the write's in one batch.",
    )
    attempt = models.PositiveIntegerField(default=0, help_text="Attempts of the current step.")
    claims = models.PositiveIntegerField(
        default=0,
        help_text="How many times the run was claimed since a step last finished (an attempt recorded); "
        "at CONFLICTDESK_CRASH_LOOP_CLAIMS the run dead-letters as crash_loop.",
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(
        null=True, blank=True, help_text="Last Celery hint sent; the sweeper re-sends only stale ones."
    )
    losses = models.JSONField(default=list, blank=True, help_text="Declared losses recorded by the fidelity guard.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["record_key", "status"]),
        ]

    def __str__(self):
        return f"run {self.pk} {self.direction} {self.step}/{self.status}"


class RunAttempt(models.Model):
    """One execution of one step: the history a dead letter carries whole."""

    run = models.ForeignKey(SyncRun, on_delete=models.PROTECT, related_name="attempts")
    step = models.CharField(max_length=30, choices=Step.choices)
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=30)
    error_class = models.CharField(max_length=100, blank=True)
    error_detail = models.TextField(blank=True)
    retry_after_seconds = models.FloatField(null=True, blank=True, help_text="Server's Retry-After, if any.")
    scheduled_delay_seconds = models.FloatField(null=True, blank=True)
    start_lag_seconds = models.FloatField(
        null=True, blank=True, help_text="How late a retry started after its due time (retries only)."
    )
    worker = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["run", "started_at", "pk"]


class DeadLetter(models.Model):
    """A run that cannot go on without a person: kept whole, never lost."""

    class Cause(models.TextChoices):
        VALIDATION = "validation"
        TRANSIENT_EXHAUSTED = "transient_exhausted", "transient faults exhausted"
        UNMAPPED = "unmapped"
        FIDELITY = "fidelity"
        REJECTED = "rejected", "rejected by the destination"
        CRASH_LOOP = "crash_loop", "crash loop (claimed repeatedly, no step finished)"

    class Status(models.TextChoices):
        OPEN = "open"
        REDRIVEN = "redriven"
        DISCARDED = "discarded"

    run = models.OneToOneField(SyncRun, on_delete=models.PROTECT, related_name="dead_letter")
    cause = models.CharField(max_length=30, choices=Cause.choices)
    step = models.CharField(max_length=30, choices=Step.choices)
    error = models.TextField(help_text="Names the record and the rule broken; no patient data.")
    rule = models.CharField(max_length=200, blank=True)
    path = models.CharField(max_length=500, blank=True)
    detail = models.JSONField(default=dict, blank=True, help_text="e.g. the fidelity diff or OperationOutcome.")
    payload = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True)
    close_reason = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "cause"])]


class Conflict(models.Model):
    """Both sides changed one record since the base: both versions kept whole."""

    class Kind(models.TextChoices):
        SITE_VS_CENTRAL = "site_vs_central"
        SITE_VS_SITE = "site_vs_site"

    class Status(models.TextChoices):
        OPEN = "open"
        RESOLVED = "resolved"
        SUPERSEDED = "superseded", "superseded by a newer change"

    class Deleted(models.TextChoices):
        NEITHER = "", "neither side"
        SITE = "site", "deleted at the site"
        CENTRAL = "central", "deleted centrally"

    run = models.OneToOneField(SyncRun, on_delete=models.PROTECT, related_name="conflict")
    record_link = models.ForeignKey(RecordLink, on_delete=models.PROTECT, related_name="conflicts")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.SITE_VS_CENTRAL)
    resource_type = models.CharField(max_length=60, blank=True)
    openehr_version_uid = models.CharField(max_length=200)
    openehr_composition = models.JSONField(help_text="The site's version, canonical JSON, whole.")
    openehr_changed_by = models.CharField(max_length=200, blank=True)
    openehr_changed_at = models.DateTimeField(null=True, blank=True)
    fhir_versions = models.JSONField(default=list, help_text='[{"type","id","version"}] as read centrally.')
    fhir_resources = models.JSONField(help_text="The central version, FHIR JSON, whole.")
    fhir_changed_by = models.CharField(max_length=200, blank=True)
    fhir_changed_at = models.DateTimeField(null=True, blank=True)
    base_content = models.JSONField(null=True, blank=True)
    base_hash = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    # A deletion on one side while the other edited: "deleted at X / changed at Y" (the *_changed_at fields).
    deleted_on = models.CharField(max_length=10, choices=Deleted.choices, blank=True, default=Deleted.NEITHER)
    opened_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "opened_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["record_link"], condition=Q(status="open"), name="one_open_conflict_per_record"
            )
        ]


class Resolution(models.Model):
    """A clinician's decision on a Conflict; executed as a new SyncRun."""

    class Choice(models.TextChoices):
        KEEP_SITE = "keep_site", "keep the site version"
        KEEP_CENTRAL = "keep_central", "keep the central version"
        MERGE = "merge", "merge field by field"

    conflict = models.OneToOneField(Conflict, on_delete=models.PROTECT, related_name="resolution")
    choice = models.CharField(max_length=20, choices=Choice.choices)
    field_choices = models.JSONField(default=dict, blank=True, help_text="path -> 'site' | 'central' for merges.")
    reason = models.TextField()
    content = models.JSONField(help_text="The chosen clinical content to write to both sides.")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    decided_at = models.DateTimeField(auto_now_add=True)


class EngineWrite(models.Model):
    """A version the engine itself wrote: when detection sees it again it is an echo, not a change."""

    destination = models.CharField(max_length=120, help_text='"central" or "site:<name>".')
    object_id = models.CharField(max_length=200, help_text="Type/id centrally, versioned object uid at a site.")
    version = models.CharField(max_length=200, help_text="FHIR versionId, or openEHR version uid.")
    run = models.ForeignKey(SyncRun, on_delete=models.PROTECT, null=True, blank=True, related_name="writes")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["destination", "object_id", "version"], name="uniq_engine_write")
        ]

    def __str__(self):
        return f"{self.destination} {self.object_id} @ {self.version}"


class Outage(models.Model):
    """One incident of a server the engine writes to or reads from (a site's CDR, or central) not answering.

    Open (``recovered_at`` unset) is the destination's circuit breaker open: runs that need it
    wait (``destination_down``) instead of burning their retry schedule, and a probe re-checks
    it at ``next_probe_at`` (``sync.workflow.breaker``).
    """

    destination = models.CharField(max_length=120, help_text='"central" or "site:<name>".')
    opened_at = models.DateTimeField(auto_now_add=True)
    recovered_at = models.DateTimeField(null=True, blank=True)
    error_class = models.CharField(max_length=100, blank=True, help_text="Error class of the failure that opened it.")
    probes = models.PositiveIntegerField(default=0, help_text="Probes that found it still down.")
    next_probe_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["destination"], condition=Q(recovered_at__isnull=True),
                                    name="uniq_open_outage_per_destination")
        ]

    def __str__(self):
        return f"outage of {self.destination} since {self.opened_at:%Y-%m-%d %H:%M:%S}"
