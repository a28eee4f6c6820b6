"""Poll every enabled site and the centre at their own intervals, forever (one small process)."""
import signal

from django.core.management.base import BaseCommand

from sync.detection import poll_loop


class Command(BaseCommand):
    help = "Run change detection in a loop: each site at its poll_interval_seconds, dispatching runs at once."

    def handle(self, *args, **options):
        stopping = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.append(True))
        self.stdout.write("polling; SIGTERM to stop")
        poll_loop(stop=lambda: bool(stopping))
