"""Invite a member of staff: the only way an account comes to exist (no self sign-up)."""
from django.core.management.base import BaseCommand, CommandError

from conflictdesk.desk.roles import ROLE_ALIASES
from sync.actions import InviteRefused, do_invite_user


class Command(BaseCommand):
    help = "Create an account in a role and e-mail a set-password link."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("role", help=f"one of: {', '.join(ROLE_ALIASES)}")
        parser.add_argument("--demo", action="store_true", help="demo account: TOTP not required")

    def handle(self, *args, email, role, demo, **options):
        try:
            user, _link = do_invite_user(email, role, acting_user=None, demo=demo)
        except InviteRefused as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"invited user {user.pk} as {role}; link sent by e-mail")
