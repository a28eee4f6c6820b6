"""The audit event: one row per operation, append-only and hash-chained."""
from django.db import models


class AuditEvent(models.Model):
    """One thing that happened to clinical data, or one human action.

    Rows are never updated or deleted (a database trigger refuses it); each
    row's `hash` covers its canonical content and `prev_hash`, per partition.
    """

    partition = models.CharField(max_length=100, help_text="Chain partition, e.g. 'site:site1'.")
    partition_seq = models.BigIntegerField()
    occurred_at = models.DateTimeField(help_text="UTC, microseconds.")
    actor = models.CharField(max_length=200, help_text="User, or 'worker@host' for the system.")
    actor_kind = models.CharField(max_length=20, default="system")
    action = models.CharField(max_length=60)
    outcome = models.CharField(max_length=30)
    source = models.CharField(max_length=120, blank=True, help_text='"site:<name>" or "central".')
    source_object = models.CharField(max_length=250, blank=True)
    source_version = models.CharField(max_length=200, blank=True)
    destination = models.CharField(max_length=120, blank=True)
    destination_object = models.CharField(max_length=250, blank=True)
    destination_version = models.CharField(max_length=200, blank=True)
    patient_link_id = models.BigIntegerField(null=True, blank=True)
    record_key = models.CharField(max_length=250, blank=True)
    run_id = models.BigIntegerField(null=True, blank=True)
    source_hash = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the payload as read.")
    written_hash = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the payload as written.")
    readback_hash = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the destination read back.")
    detail = models.JSONField(default=dict, blank=True, help_text="Ids and codes only; never patient data.")
    prev_hash = models.CharField(max_length=64)
    # Not unique-indexed: the chain already makes hashes distinct, and a random-keyed index costs every append.
    hash = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["partition", "partition_seq"], name="uniq_audit_partition_seq")
        ]
        indexes = [
            models.Index(fields=["occurred_at"]),
            models.Index(fields=["record_key", "occurred_at"]),
            models.Index(fields=["patient_link_id"]),
            models.Index(fields=["run_id"]),
        ]
        ordering = ["occurred_at", "pk"]

    def __str__(self):
        return f"{self.occurred_at:%Y-%m-%dT%H:%M:%S.%fZ} {self.action} {self.outcome}"


class AuditHead(models.Model):
    """The last link of one partition's chain; its row lock is the partition's sequencer."""

    partition = models.CharField(max_length=100, primary_key=True)
    seq = models.BigIntegerField()
    hash = models.CharField(max_length=64)

    def __str__(self):
        return f"{self.partition}@{self.seq}"


class AuditAnchor(models.Model):
    """A chain head as written to the central FHIR server, so a rewrite can be seen from outside."""

    partition = models.CharField(max_length=100)
    seq = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    fhir_id = models.CharField(max_length=64)
    fhir_version = models.CharField(max_length=64, blank=True)
    anchored_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["partition", "seq"], name="uniq_audit_anchor_partition_seq")]
        ordering = ["partition", "seq"]

    def __str__(self):
        return f"{self.partition}@{self.seq} -> AuditEvent/{self.fhir_id}"
