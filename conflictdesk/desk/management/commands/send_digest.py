"""Mail staff a digest of new conflicts and dead letters (run from cron or Celery beat every interval)."""
from django.core.management.base import BaseCommand

from conflictdesk.desk.digest import send_digest


class Command(BaseCommand):
    help = "E-mail CONFLICTDESK_STAFF_EMAILS what is new since the last digest."

    def handle(self, *args, **options):
        count = send_digest()
        self.stdout.write(f"digest: {count} new item(s)")
