"""The unmanaged ``Lock`` model: records its options; creates no table."""

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = ()

    operations = (
        migrations.CreateModel(
            name="Lock",
            fields=[
                ("name", models.CharField(max_length=1024, primary_key=True, serialize=False)),
            ],
            options={
                "verbose_name": "distributed lock",
                "verbose_name_plural": "distributed locks",
                "permissions": (("release_lock", "Can force-release distributed locks"),),
                "managed": False,
                "default_permissions": ("view",),
            },
        ),
    )
