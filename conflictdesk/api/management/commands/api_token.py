"""Print (creating if needed) the API token of one user: `api_token <email> [--rotate]`."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from sync.actions import do_issue_api_token


class Command(BaseCommand):
    help = "Print the REST API token for a user (by e-mail), creating it; --rotate replaces it."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--rotate", action="store_true", help="Delete the old token and issue a new one.")

    def handle(self, *args, email, rotate, **options):
        User = get_user_model()
        user = User.objects.filter(email__iexact=email.strip()).first() or \
            User.objects.filter(username__iexact=email.strip()).first()
        if user is None:
            raise CommandError(f"no user with e-mail {email!r}; invite them first (invite_user)")
        if not user.is_active:
            raise CommandError(f"user {email!r} is inactive")
        self.stdout.write(do_issue_api_token(user, acting_user=None, rotate=rotate).key)
