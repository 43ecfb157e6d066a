import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def sessions_so_far_are_the_default_profiles(apps, schema_editor):
    AvatarProfile = apps.get_model("profiles", "AvatarProfile")
    AvatarSession = apps.get_model("sessions_app", "AvatarSession")
    default = AvatarProfile.objects.filter(slug=settings.DEFAULT_PROFILE_SLUG).first()
    if default is not None:
        AvatarSession.objects.filter(profile__isnull=True).update(profile=default)


class Migration(migrations.Migration):
    dependencies = [
        ("profiles", "0002_seed_default"),
        ("sessions_app", "0006_transcript_said_and_intended"),
    ]

    operations = [
        migrations.AddField(
            model_name="avatarsession",
            name="profile",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="sessions",
                to="profiles.avatarprofile",
            ),
        ),
        migrations.RunPython(sessions_so_far_are_the_default_profiles, migrations.RunPython.noop),
    ]
