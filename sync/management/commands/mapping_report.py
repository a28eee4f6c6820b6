"""Conversion report over openEHR templates, canonical and FLAT compositions and FHIR files (no server needed).

    python manage.py mapping_report PATH... [--opt OPT]... [--json report.json]

Every file is counted and ends in one state (sync.mapping.report.STATES); the last line is the summary
'N files, N converted, N round-tripped, N partial, N nothing mapped, N skipped, N failed'; the exit
status is 1 when any file failed.
"""
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from sync.mapping.report import run


class Command(BaseCommand):
    help = ("Convert files or folders (templates, canonical and FLAT compositions, FHIR resources and bundles) "
            "and round-trip them; print one line per file with its state, per template where each node's "
            "value ends (mapped, residue, dropped), and a summary; exit 1 when any file failed.")

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+")
        parser.add_argument("--opt", action="append", default=[],
                            help="OPT for FLAT compositions (repeatable; .opt files among the paths count too)")
        parser.add_argument("--json", default=None, metavar="PATH",
                            help="write one record per file (state, resources, losses, unmapped, validation) here")

    def handle(self, *args, **options):
        rep = run(options["paths"], options["opt"])
        for line in rep.lines():
            self.stdout.write(line)
        self.stdout.write(rep.summary)
        if options["json"]:
            Path(options["json"]).write_text(json.dumps(rep.as_json(), indent=1, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
        if rep.failed:
            raise CommandError(f"{rep.failed} file(s) failed")
