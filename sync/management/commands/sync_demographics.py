"""Re-read the demographics of every patient of the sites that keep them; write what moved."""
from django.core.management.base import BaseCommand

from sync.models import Site
from sync.patients.refresh import refresh_site
from sync.workflow.services import get_services


class Command(BaseCommand):
    help = ("Refresh central registrations from each demographics site's EHR_STATUS or FHIR service "
            "(`sync_demographics [--site S]`); counts only, never patient data.")

    def add_arguments(self, parser):
        parser.add_argument("--site", default="", help="one site by name (default: every site with demographics)")

    def handle(self, *args, site="", **options):
        services = get_services()
        sites = Site.objects.exclude(demographics_source=Site.Demographics.NONE).filter(enabled=True)
        for one in sites.filter(name=site) if site else sites:
            result = refresh_site(one, services.fhir, services.openehr(one))
            self.stdout.write(f"{one.name}: {result.checked} checked, {result.written} written, "
                              f"{result.failed} failed")
