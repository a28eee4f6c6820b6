"""Conversion report over openEHR templates, canonical and FLAT compositions and FHIR files (no server needed).

    python manage.py mapping_report PATH... [--opt OPT]... [--json report.json]
    python manage.py mapping_report --coverage [--tests DIR]

Every file is counted and ends in one state (sync.mapping.report.STATES); the last line is the summary
'N files, N converted, N round-tripped, N partial, N nothing mapped, N skipped, N failed'; the exit
status is 1 when any file failed.

--coverage prints, per model file (archetype) and per FHIR resource type, whether tests prove it forward,
reverse and HAPI-validated, and its profile, then the totals (sync.mapping.coverage); exit 1 when a model
file lacks a both-way test or a test module's COVERS declaration does not hold.
"""
import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sync.mapping.coverage import coverage
from sync.mapping.report import run


class Command(BaseCommand):
    help = ("Convert files or folders (templates, canonical and FLAT compositions, FHIR resources and bundles) "
            "and round-trip them; print one line per file with its state, per template where each node's "
            "value ends (mapped, residue, dropped), and a summary; exit 1 when any file failed.")

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="*")
        parser.add_argument("--opt", action="append", default=[],
                            help="OPT for FLAT compositions (repeatable; .opt files among the paths count too)")
        parser.add_argument("--json", default=None, metavar="PATH",
                            help="write one record per file (state, resources, losses, unmapped, validation) here")
        parser.add_argument("--coverage", action="store_true",
                            help="per archetype and FHIR resource type: forward, reverse, HAPI-validated in tests")
        parser.add_argument("--tests", default=str(Path(settings.BASE_DIR) / "tests"), metavar="DIR",
                            help="the test tree whose COVERS declarations --coverage reads")

    def handle(self, *args, **options):
        if options["coverage"]:
            return self.coverage(Path(options["tests"]))
        if not options["paths"]:
            raise CommandError("give files or folders to report on, or --coverage")
        rep = run(options["paths"], options["opt"])
        for line in rep.lines():
            self.stdout.write(line)
        self.stdout.write(rep.summary)
        if options["json"]:
            Path(options["json"]).write_text(json.dumps(rep.as_json(), indent=1, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
        if rep.failed:
            raise CommandError(f"{rep.failed} file(s) failed")

    def coverage(self, tests_dir: Path):
        cov = coverage(tests_dir)
        for line in cov.lines():
            self.stdout.write(line)
        for problem in cov.problems:
            self.stderr.write(problem)
        if cov.problems:
            raise CommandError(f"{len(cov.problems)} coverage problem(s)")
