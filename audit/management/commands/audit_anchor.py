"""`manage.py audit_anchor [--verify]`: anchor chain heads on the central server, or check the anchors."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from audit.anchor import anchor_heads, verify_anchors
from sync.clients.fhir import FHIRClient
from sync.workflow.services import central_auth


class Command(BaseCommand):
    help = "Write each moved audit chain head to the central FHIR server; with --verify, check every anchor."

    def add_arguments(self, parser):
        parser.add_argument("--verify", action="store_true", help="Check the anchors instead of writing new ones.")

    def handle(self, *args, verify=False, **options):
        with FHIRClient(settings.CONFLICTDESK_FHIR_BASE_URL, auth=central_auth()) as client:
            if not verify:
                for anchor in anchor_heads(client):
                    self.stdout.write(f"anchored {anchor.partition}#{anchor.seq} as AuditEvent/{anchor.fhir_id}")
                return
            problems = verify_anchors(client)
        for problem in problems:
            self.stderr.write(f"BROKEN {problem.partition}#{problem.seq} (AuditEvent/{problem.fhir_id}): {problem.problem}")
        if problems:
            raise CommandError(f"{len(problems)} audit anchors do not match the local chain")
        self.stdout.write("every audit anchor matches the local chain")
