"""API tokens move from DRF's plain-text table to knox's digests; the plain-text copies are dropped.

A live token keeps working until the expiry it already had (issued + CONFLICTDESK_API_TOKEN_DAYS),
so no machine client breaks on upgrade; a token already past it is not carried over. Then the
old table is dropped, so no plain-text token survives in the database (backups taken before the
upgrade still hold them: rotate if those are not trusted). Irreversible: the keys are gone.
"""
from datetime import timedelta

from django.conf import settings
from django.db import migrations
from django.utils import timezone
from knox.crypto import hash_token
from knox.settings import CONSTANTS

PLAIN_TABLE = "authtoken_token"


def hash_plain_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if PLAIN_TABLE not in connection.introspection.table_names():
        return  # a database that never had DRF's tokens
    AuthToken = apps.get_model("knox", "AuthToken")
    lifetime = timedelta(days=settings.CONFLICTDESK_API_TOKEN_DAYS)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id, created FROM {PLAIN_TABLE}")
        for key, user_id, created in cursor.fetchall():
            if created + lifetime <= timezone.now():
                continue
            digest = hash_token(key)
            AuthToken(digest=digest, token_key=key[:CONSTANTS.TOKEN_KEY_LENGTH], user_id=user_id,
                      expiry=created + lifetime).save()
            AuthToken.objects.filter(digest=digest).update(created=created)  # auto_now_add set it to now
        cursor.execute(f"DROP TABLE {PLAIN_TABLE}")
        cursor.execute("DELETE FROM django_migrations WHERE app = 'authtoken'")


class Migration(migrations.Migration):
    dependencies = [("knox", "0009_extend_authtoken_field")]
    operations = [migrations.RunPython(hash_plain_tokens)]
