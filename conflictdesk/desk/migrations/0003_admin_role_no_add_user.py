"""The admin role no longer adds accounts in Django's admin: accounts come from invitations only."""
from django.db import migrations


def drop_add_user(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group in Group.objects.filter(name="admin"):
        group.permissions.remove(*Permission.objects.filter(
            content_type__app_label="auth", codename__in=["add_user", "delete_user"]))


def restore_add_user(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group in Group.objects.filter(name="admin"):
        group.permissions.add(*Permission.objects.filter(content_type__app_label="auth", codename="add_user"))


class Migration(migrations.Migration):
    dependencies = [("desk", "0002_roles")]
    operations = [migrations.RunPython(drop_add_user, restore_add_user)]
