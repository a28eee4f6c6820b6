"""Prove that every source version at a site in a time range is accounted for, and say what is still pending.

Re-reads the site (not our own tables) for the compositions committed in the
range and each of their versions, then classifies each version as synced,
echo, dead_letter, conflict, pending, or superseded (an older version whose
record has since been synced at a newer one: state sync carries it).

"clean" is printed only when every version is accounted for and none waits:
nothing unaccounted (listed, exit 1), nothing dead-lettered and still open or
in flight (listed as PENDING with its dead letter or run, exit 2). A dead
letter a person discarded is accounted for (closed with a reason).
"""
from datetime import datetime, timezone

from django.core.management.base import BaseCommand, CommandError

from sync.identity import site_source
from sync.models import ChangeEvent, DeadLetter, Site
from sync.workflow.reconcile import reconcile_site


class Command(BaseCommand):
    help = "reconcile --site S --since ISO --until ISO [--ehr EHR_ID]"

    def add_arguments(self, parser):
        parser.add_argument("--site", required=True)
        parser.add_argument("--since", required=True, type=_instant)
        parser.add_argument("--until", required=True, type=_instant)
        parser.add_argument("--ehr", default=None, help="only this EHR of the site")

    def handle(self, *args, site, since, until, ehr=None, **options):
        site = Site.objects.get(name=site)
        report = reconcile_site(site, since, until, ehr_id=ehr)
        for state, versions in sorted(report.by_state.items()):
            self.stdout.write(f"{state}: {len(versions)}")
        for version_uid in report.unaccounted:
            self.stdout.write(f"UNACCOUNTED {version_uid}")
        if report.unaccounted:
            raise CommandError(f"{len(report.unaccounted)} source version(s) unaccounted for", returncode=1)
        waiting = pending(site, report.by_state.get("dead_letter", []) + report.by_state.get("pending", []))
        for line in waiting:
            self.stdout.write(f"PENDING {line}")
        if waiting:
            raise CommandError(f"not clean: {len(waiting)} source version(s) dead-lettered or in flight "
                               "(work them in the desk's dead letters, or wait for the runs)", returncode=2)
        self.stdout.write("clean")


def pending(site, versions: list[str]) -> list[str]:
    """One line per version still waiting: its open dead letter (id, cause, rule) or its run in flight."""
    events = (ChangeEvent.objects.filter(source=site_source(site.name), source_version__in=versions)
              .select_related("run__dead_letter").order_by("source_version"))
    lines = []
    for event in events:
        run = getattr(event, "run", None)
        letter = getattr(run, "dead_letter", None) if run else None
        if letter is not None and letter.status == DeadLetter.Status.DISCARDED:
            continue  # a person closed it, with a reason: accounted for
        if letter is not None and letter.status == DeadLetter.Status.OPEN:
            lines.append(f"{event.source_version} dead letter #{letter.pk} ({letter.cause}, rule {letter.rule or '-'})")
        elif run is not None:
            lines.append(f"{event.source_version} in flight: run #{run.pk} {run.status} at {run.step}")
        else:
            lines.append(f"{event.source_version} in flight: no run yet")
    return lines


def _instant(value: str) -> datetime:
    """An ISO time; without an offset it is UTC (the CDR compares instants)."""
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
