"""`manage.py audit_export --since T --until T --format fhir|csv|jsonl [--output FILE]`."""

from argparse import ArgumentTypeError
from datetime import datetime, timezone

from django.core.management.base import BaseCommand, CommandError

from audit.export import WRITERS, events_between


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ArgumentTypeError(f"not an ISO 8601 date or time: {text!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class Command(BaseCommand):
    help = "Export audit events in [since, until) as FHIR R4 AuditEvent ndjson, CSV or JSON Lines."

    def add_arguments(self, parser):
        parser.add_argument("--since", required=True, type=_instant, help="ISO 8601, inclusive; naive means UTC.")
        parser.add_argument("--until", required=True, type=_instant, help="ISO 8601, exclusive; naive means UTC.")
        parser.add_argument("--format", required=True, choices=sorted(WRITERS))
        parser.add_argument("--output", help="File to write; standard output when absent.")

    def handle(self, *args, since, until, format, output=None, **options):
        if until <= since:
            raise CommandError("--until must be after --since")
        events = events_between(since, until).iterator(chunk_size=2000)
        if output:
            with open(output, "w", encoding="utf-8", newline="") as out:
                count = WRITERS[format](events, out)
        else:
            count = WRITERS[format](events, self.stdout)
        self.stderr.write(f"exported {count} audit events")
