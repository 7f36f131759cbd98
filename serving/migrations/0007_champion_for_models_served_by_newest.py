"""Until now a model with no deployment version and no champion served its newest ready
version; it now serves only what a person promoted (its first ready version is crowned champion
as it becomes ready). So that no model changes what it serves on upgrade, each such model gets a
`champion` on the version it served: its newest ready one. (A migration is no person: it writes
no audit event; the alias's `updated_at` tells when.)"""

from typing import Any

import django.db.models.deletion
from django.db import migrations, models


def crown_what_served(apps: Any, schema_editor: Any) -> None:
    alias_model = apps.get_model("registry", "Alias")
    version_model = apps.get_model("registry", "ModelVersion")
    model_model = apps.get_model("registry", "RegisteredModel")
    deployment_model = apps.get_model("serving", "Deployment")
    pinned = deployment_model.objects.filter(active_version__isnull=False).values("model_id")
    crowned = alias_model.objects.filter(name="champion").values("model_id")
    for model_id in model_model.objects.exclude(pk__in=pinned).exclude(pk__in=crowned).values_list("pk", flat=True):
        newest = version_model.objects.filter(model_id=model_id, status="ready").order_by("-number").first()
        if newest is not None:
            alias_model.objects.create(model_id=model_id, name="champion", version=newest)


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0002_version_validation_attempts"),
        ("serving", "0006_jobs_and_streams"),
    ]

    operations = [
        migrations.RunPython(crown_what_served, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="deployment",
            name="active_version",
            field=models.ForeignKey(blank=True, help_text="Empty: the champion alias", null=True,
                                    on_delete=django.db.models.deletion.PROTECT, related_name="+",
                                    to="registry.modelversion"),
        ),
    ]
