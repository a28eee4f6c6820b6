"""Re-read the demographics of every patient of the sites that keep them; write what moved."""
from django.core.management.base import BaseCommand

from sync.patients.refresh import refresh_sites
from sync.workflow.services import get_services


class Command(BaseCommand):
    help = ("Refresh central registrations from each demographics site's EHR_STATUS or FHIR service "
            "(`sync_demographics [--site S]`); counts only, never patient data.")

    def add_arguments(self, parser):
        parser.add_argument("--site", default="", help="one site by name (default: every site with demographics)")

    def handle(self, *args, site="", **options):
        passed = refresh_sites(get_services(), site)
        if passed is None:
            self.stdout.write("another demographics pass is running; nothing done")
            return
        for name, result in passed.items():
            self.stdout.write(f"{name}: {result.checked} checked, {result.written} written, {result.failed} failed")
