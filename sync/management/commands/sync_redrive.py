"""Send dead-lettered runs through the workflow again: one by id, or every open one a filter matches."""
from datetime import datetime, timezone

from django.core.management.base import BaseCommand, CommandError

from sync.actions import DeadLetterRefused, RedriveFilter, do_redrive_dead_letter, do_redrive_dead_letters
from sync.models import DeadLetter


class Command(BaseCommand):
    help = ("Re-drive a dead letter: `sync_redrive <dead_letter_id>`; or every open one matching a filter: "
            "`sync_redrive --site S --rule PREFIX --cause C --since ISO --until ISO` (one audited action).")

    def add_arguments(self, parser):
        parser.add_argument("dead_letter_id", type=int, nargs="?")
        parser.add_argument("--site", default="", help='a site name, or "central"')
        parser.add_argument("--rule", default="", help="the rule's start")
        parser.add_argument("--cause", default="", choices=["", *DeadLetter.Cause.values])
        parser.add_argument("--since", type=_instant, default=None)
        parser.add_argument("--until", type=_instant, default=None)
        parser.add_argument("--all", action="store_true", help="every open dead letter (no filter given)")

    def handle(self, *args, dead_letter_id=None, site="", rule="", cause="", since=None, until=None, **options):
        criteria = RedriveFilter(site=site, rule=rule, cause=cause, since=since, until=until)
        try:
            if dead_letter_id is not None:
                run = do_redrive_dead_letter(DeadLetter.objects.get(pk=dead_letter_id), acting_user=None)
                self.stdout.write(f"dead letter {dead_letter_id}: run {run.pk} re-driven from {run.step}")
                return
            if not criteria.described() and not options["all"]:
                raise CommandError("give a dead letter id, a filter, or --all")
            runs = do_redrive_dead_letters(criteria, acting_user=None)
        except DeadLetterRefused as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{len(runs)} dead letter(s) re-driven: runs {' '.join(str(r.pk) for r in runs)}")


def _instant(value: str) -> datetime:
    """An ISO time; without an offset it is UTC."""
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
