"""Backlog and state per site: cursor, runs by status, open dead letters and conflicts."""
from django.core.management.base import BaseCommand
from django.db.models import Count

from sync.models import Conflict, Cursor, DeadLetter, Site, SyncRun


class Command(BaseCommand):
    help = "Show the engine's backlog and state per site (and central)."

    def handle(self, *args, **options):
        cursors = {c.source: c for c in Cursor.objects.all()}
        rows = [(f"site:{s.name}", s) for s in Site.objects.order_by("name")] + [("central", None)]
        for source, site in rows:
            runs = SyncRun.objects.filter(change_event__source=source)
            by_status = dict(runs.values_list("status").annotate(n=Count("pk")))
            cursor = cursors.get(source)
            dead = DeadLetter.objects.filter(run__in=runs, status=DeadLetter.Status.OPEN).count()
            conflicts = Conflict.objects.filter(run__in=runs, status=Conflict.Status.OPEN).count()
            self.stdout.write(
                f"{source}{'' if site is None or site.enabled else ' (disabled)'}: "
                f"cursor={cursor.position.isoformat() if cursor and cursor.position else '-'} "
                f"polled={cursor.last_polled_at.isoformat() if cursor and cursor.last_polled_at else '-'} "
                f"runs={by_status or {}} dead_letters={dead} conflicts={conflicts}"
            )
