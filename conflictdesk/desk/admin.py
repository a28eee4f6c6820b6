"""Django's user admin, restricted for the admin role: it manages people, it never hands out power.

Roles are given by invitation only (``do_invite_user``), never by editing an
account here. Below superuser, an account can be viewed and (de)activated,
nothing else: no superuser flag, staff flag, groups, permissions, e-mail (a
password reset goes there) or password, no new accounts (those bypass the
invitation), and no change at all to one's own account or a superuser's.
"""
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied

User = get_user_model()

_LIMITED_FIELDSETS = (
    (None, {"fields": ("username", "email")}),
    ("Personal info", {"fields": ("first_name", "last_name")}),
    ("Status", {"fields": ("is_active", "last_login", "date_joined")}),
)
_LIMITED_READONLY = ("username", "email", "last_login", "date_joined")


class RestrictedUserAdmin(UserAdmin):
    def get_fieldsets(self, request, obj=None):
        if request.user.is_superuser or obj is None:
            return super().get_fieldsets(request, obj)
        return _LIMITED_FIELDSETS

    def get_readonly_fields(self, request, obj=None):
        if request.user.is_superuser:
            return super().get_readonly_fields(request, obj)
        return _LIMITED_READONLY

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        if request.user.is_superuser:
            return True
        if obj is not None and (obj.is_superuser or obj.pk == request.user.pk):
            return False
        return super().has_change_permission(request, obj)

    def user_change_password(self, request, id, form_url=""):
        # A password is set by its owner through the invitation link, never by another person.
        if not request.user.is_superuser:
            raise PermissionDenied
        return super().user_change_password(request, id, form_url)


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, RestrictedUserAdmin)
