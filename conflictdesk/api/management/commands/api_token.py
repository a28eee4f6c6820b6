"""Issue one user a new API token and print it, once: `api_token <email> [--rotate]`.

Only its digest is stored, so it cannot be shown again: a lost token is replaced, not recovered.
"""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from sync.actions import do_issue_api_token


class Command(BaseCommand):
    help = ("Issue a REST API token for a user (by e-mail) and print it once; "
            "--rotate first revokes the user's other tokens.")

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--rotate", action="store_true",
                            help="Revoke every token the user has before issuing the new one.")

    def handle(self, *args, email, rotate, **options):
        User = get_user_model()
        user = User.objects.filter(email__iexact=email.strip()).first() or \
            User.objects.filter(username__iexact=email.strip()).first()
        if user is None:
            raise CommandError(f"no user with e-mail {email!r}; invite them first (invite_user)")
        if not user.is_active:
            raise CommandError(f"user {email!r} is inactive")
        self.stdout.write(do_issue_api_token(user, acting_user=None, rotate=rotate))
