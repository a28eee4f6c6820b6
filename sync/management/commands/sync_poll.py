"""Run one detection pass for a site (or the central server) now."""
from django.core.management.base import BaseCommand

from sync.detection import poll_central, poll_site
from sync.models import Site


class Command(BaseCommand):
    help = "One detection pass: `sync_poll site1`, or `sync_poll central`."

    def add_arguments(self, parser):
        parser.add_argument("source", help="a site name, or 'central'")

    def handle(self, *args, source, **options):
        created = poll_central() if source == "central" else poll_site(Site.objects.get(name=source))
        self.stdout.write(f"{source}: {created} new run(s)")
