"""Conversion report over openEHR templates, canonical and FLAT compositions and FHIR files (no server needed)."""
import tempfile

from django.core.management.base import BaseCommand, CommandError

from sync.mapping.flat import flat_files_to_canonical
from sync.mapping.report import report


class Command(BaseCommand):
    help = ("Convert files or folders (OPTs are registered first, then canonical compositions and FHIR "
            "resources/bundles), print one line per file, per template the leaf paths mapped and lost, and a "
            "summary; exit non-zero when any mapped-archetype input fails.")

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+")
        parser.add_argument("--opt", action="append", default=[],
                            help="OPT for FLAT compositions (repeatable; .opt files among the paths count too)")

    def handle(self, *args, **options):
        with tempfile.TemporaryDirectory() as canonical_dir:  # FLAT files become canonical ones first
            paths, flat_failures = flat_files_to_canonical(_opts_first(options["paths"]), canonical_dir,
                                                           options["opt"])
            lines, summary = report(paths)
        for line in flat_failures + lines:
            self.stdout.write(line)
        self.stdout.write(summary)
        failed = int(summary.rsplit(",", 1)[-1].split()[0]) + len(flat_failures)
        if failed:
            raise CommandError(f"{failed} mapped-archetype input(s) failed")


def _opts_first(paths: list[str]) -> list[str]:
    """Templates before data, so compositions find the templates they use."""
    return sorted(paths, key=lambda p: (not str(p).endswith(".opt") and "template" not in str(p).lower()))
