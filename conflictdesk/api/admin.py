"""knox's own admin lets a superuser mint a token for anyone, with no expiry and no audit event:
replaced by a read-only listing. Tokens are issued only by ``do_issue_api_token`` (``manage.py api_token``)."""
from django.contrib import admin
from knox.models import AuthToken

from audit.admin import ReadOnlyAdmin

admin.site.unregister(AuthToken)


@admin.register(AuthToken)
class AuthTokenAdmin(ReadOnlyAdmin):
    list_display = ("token_key", "user", "created", "expiry")
    search_fields = ("user__username",)
