"""Register the demo's EHRbase sites and demo accounts (idempotent)."""
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sync.demo.setup import ensure_demo_accounts, ensure_sites, require_demo_mode


class Command(BaseCommand):
    help = "Create Site rows site1..N for the local EHRbase instances and one demo account per role."

    def add_arguments(self, parser):
        parser.add_argument("--sites", type=int, default=2)
        parser.add_argument("--poll-interval", type=int, default=1)
        parser.add_argument(
            "--url-pattern",
            default=settings.CONFLICTDESK_DEMO_SITE_URL,
            help="{i} is the site number, {port} is 8100+i (default: the local sites deploy/ehrbase.sh starts)",
        )

    def handle(self, *args, sites, poll_interval, url_pattern, **options):
        require_demo_mode()
        password = settings.CONFLICTDESK_DEMO_PASSWORD
        if not password:
            raise CommandError("CONFLICTDESK_DEMO_PASSWORD is required (the demo script sets it)")
        rows = ensure_sites(sites, url_pattern=url_pattern, poll_interval_seconds=poll_interval)
        self.stdout.write(f"sites: {', '.join(s.name for s in rows)}")
        for email, role in ensure_demo_accounts(password):
            self.stdout.write(f"demo account {email} ({role})")
