"""`manage.py audit_verify [--partition P]`: exit 1 when any chain is broken."""

from django.core.management.base import BaseCommand, CommandError

from audit.verify import verify_all


class Command(BaseCommand):
    help = "Recompute every audit chain and report the first broken link of each partition."

    def add_arguments(self, parser):
        parser.add_argument("--partition", help="Verify only this partition, e.g. 'site:site1'.")

    def handle(self, *args, partition=None, **options):
        reports = verify_all(partition)
        if partition and not reports[0].events and not reports[0].broken:
            raise CommandError(f"no audit events in partition {partition!r}")
        broken = [r for r in reports if r.broken]
        for report in reports:
            if report.broken:
                self.stderr.write(f"BROKEN {report.broken.describe()}")
            else:
                self.stdout.write(f"ok {report.partition!r}: {report.events} events")
        if broken:
            raise CommandError(f"{len(broken)} of {len(reports)} audit chains broken")
        self.stdout.write(f"all {len(reports)} audit chains intact")
