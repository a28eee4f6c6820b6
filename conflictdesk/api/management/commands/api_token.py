"""Print (creating if needed) the API token of one user: `api_token <email> [--rotate]`."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.authtoken.models import Token

from audit.record import record_event, system_actor


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
        with transaction.atomic():
            if rotate:
                Token.objects.filter(user=user).delete()
            token, created = Token.objects.get_or_create(user=user)
            if created:  # the key itself never goes into the audit trail
                record_event(action="api.token.issue", outcome="ok", actor=f"cli:{system_actor()}",
                             detail={"user_id": user.pk, "rotated": rotate})
        self.stdout.write(token.key)
