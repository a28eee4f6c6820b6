"""Prove that every source version at a site in a time range is accounted for.

Re-reads the site (not our own tables) for the compositions committed in the
range and each of their versions, then classifies each version as synced,
echo, dead_letter, conflict, pending, or superseded (an older version whose
record has since been synced at a newer one: state sync carries it). Anything
else is listed and the command exits 1.
"""
from datetime import datetime, timezone

from django.core.management.base import BaseCommand, CommandError

from sync.models import Site
from sync.workflow.reconcile import reconcile_site


class Command(BaseCommand):
    help = "reconcile --site S --since ISO --until ISO [--ehr EHR_ID]"

    def add_arguments(self, parser):
        parser.add_argument("--site", required=True)
        parser.add_argument("--since", required=True, type=_instant)
        parser.add_argument("--until", required=True, type=_instant)
        parser.add_argument("--ehr", default=None, help="only this EHR of the site")

    def handle(self, *args, site, since, until, ehr=None, **options):
        report = reconcile_site(Site.objects.get(name=site), since, until, ehr_id=ehr)
        for state, versions in sorted(report.by_state.items()):
            self.stdout.write(f"{state}: {len(versions)}")
        for version_uid in report.unaccounted:
            self.stdout.write(f"UNACCOUNTED {version_uid}")
        if report.unaccounted:
            raise CommandError(f"{len(report.unaccounted)} source version(s) unaccounted for", returncode=1)
        self.stdout.write("clean")


def _instant(value: str) -> datetime:
    """An ISO time; without an offset it is UTC (the CDR compares instants)."""
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
