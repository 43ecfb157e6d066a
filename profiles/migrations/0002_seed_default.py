from django.conf import settings
from django.db import migrations


def seed_default(apps, schema_editor):
    from profiles.models import AvatarProfile as CurrentModel

    AvatarProfile = apps.get_model("profiles", "AvatarProfile")
    fields = CurrentModel.seed_fields(settings)
    if not AvatarProfile.objects.filter(slug=fields["slug"]).exists():
        AvatarProfile.objects.create(**fields)


class Migration(migrations.Migration):
    dependencies = [("profiles", "0001_initial")]

    operations = [migrations.RunPython(seed_default, migrations.RunPython.noop)]
