"""Conversion report over openEHR templates, canonical compositions and FHIR files (no server needed)."""
from django.core.management.base import BaseCommand, CommandError

from sync.mapping.report import report


class Command(BaseCommand):
    help = ("Convert files or folders (OPTs are registered first, then canonical compositions and FHIR "
            "resources/bundles), print one line per file, per template the leaf paths mapped and lost, and a "
            "summary; exit non-zero when any mapped-archetype input fails.")

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+")

    def handle(self, *args, **options):
        lines, summary = report(_opts_first(options["paths"]))
        for line in lines:
            self.stdout.write(line)
        self.stdout.write(summary)
        failed = int(summary.rsplit(",", 1)[-1].split()[0])
        if failed:
            raise CommandError(f"{failed} mapped-archetype input(s) failed")


def _opts_first(paths: list[str]) -> list[str]:
    """Templates before data, so compositions find the templates they use."""
    return sorted(paths, key=lambda p: (not str(p).endswith(".opt") and "template" not in str(p).lower()))
