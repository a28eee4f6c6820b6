"""The data steward decides possible patient matches (issue 19): permission desk.match_patients."""
from django.contrib.auth.management import create_permissions
from django.db import migrations

# Frozen here, not imported from roles.py (see 0002_roles).
PERMISSIONS = [
    ("decide_conflict", "Decide conflicts (keep site / keep central / merge)"),
    ("manage_sites", "Manage sites"),
    ("manage_users", "Invite users and assign roles"),
    ("match_patients", "Confirm or reject possible patient matches (MDM) and merge golden records"),
    ("view_audit", "Browse the audit trail and verify its chains"),
    ("view_conflicts", "See the conflict queue and conflict details"),
    ("view_deadletters", "See dead letters"),
    ("view_health", "See the health dashboard"),
    ("work_deadletters", "Re-drive and discard dead letters"),
]


def grant(apps, schema_editor):
    app_config = apps.get_app_config("desk")
    app_config.models_module = True  # the migration state's stub lacks it; create_permissions needs it set
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    perm = Permission.objects.get(content_type__app_label="desk", codename="match_patients")
    for group in Group.objects.filter(name="data steward"):
        group.permissions.add(perm)


def revoke(apps, schema_editor):
    apps.get_model("auth", "Permission").objects.filter(content_type__app_label="desk",
                                                        codename="match_patients").delete()


class Migration(migrations.Migration):
    dependencies = [("desk", "0003_admin_role_no_add_user")]
    operations = [
        migrations.AlterModelOptions(name="deskaccess", options={
            "default_permissions": (), "managed": False, "permissions": PERMISSIONS}),
        migrations.RunPython(grant, revoke),
    ]
