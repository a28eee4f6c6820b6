"""Create the role groups and give them their permissions (from roles.py)."""
from django.contrib.auth.management import create_permissions
from django.db import migrations

# Frozen here, not imported: a data migration must not change when roles.py does.
ROLE_PERMISSIONS = {
    "clinician reviewer": ["view_conflicts", "decide_conflict", "view_health"],
    "data steward": ["view_conflicts", "view_deadletters", "work_deadletters", "view_health"],
    "auditor": ["view_conflicts", "view_deadletters", "view_audit", "view_health"],
    "admin": ["manage_sites", "manage_users", "view_health"],
    "demo": [],
}
ADMIN_MODEL_PERMISSIONS = [("sync", "site", ("view", "add", "change")), ("auth", "user", ("view", "add", "change"))]


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations (post_migrate); we need them now.
    for label in ("desk", "sync", "auth"):
        app_config = apps.get_app_config(label)
        app_config.models_module = True  # the migration state's stub lacks it; create_permissions needs it set
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*Permission.objects.filter(content_type__app_label="desk", codename__in=codenames))
    admin = Group.objects.get(name="admin")
    for app_label, model, actions in ADMIN_MODEL_PERMISSIONS:
        admin.permissions.add(*Permission.objects.filter(
            content_type__app_label=app_label, codename__in=[f"{a}_{model}" for a in actions]))


def drop_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_PERMISSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("desk", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("sync", "0001_initial"),
    ]
    operations = [migrations.RunPython(create_roles, drop_roles)]
