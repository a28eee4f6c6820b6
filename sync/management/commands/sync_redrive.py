"""Send a dead-lettered run through the workflow again."""
from django.core.management.base import BaseCommand, CommandError

from sync.actions import DeadLetterRefused, do_redrive_dead_letter
from sync.models import DeadLetter


class Command(BaseCommand):
    help = "Re-drive a dead letter: `sync_redrive <dead_letter_id>`."

    def add_arguments(self, parser):
        parser.add_argument("dead_letter_id", type=int)

    def handle(self, *args, dead_letter_id, **options):
        try:
            run = do_redrive_dead_letter(DeadLetter.objects.get(pk=dead_letter_id), acting_user=None)
        except DeadLetterRefused as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"dead letter {dead_letter_id}: run {run.pk} re-driven from {run.step}")
