from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from console.admin import AuditedAdmin
from console.audit import Actor
from serving import services
from serving.models import Deployment


@admin.register(Deployment)
class DeploymentAdmin(AuditedAdmin):
    list_display = ["model", "active_version", "max_batch_size", "max_queue_delay_ms", "max_queue_depth",
                    "default_timeout_ms", "min_workers", "updated_at"]
    readonly_fields = ["updated_at", "updated_by"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # The service validates, stamps and audits, exactly as for the API.
        changes = {field: form.cleaned_data[field] for field in form.changed_data if field in services.SETTINGS}
        if "active_version" in form.changed_data:
            version = form.cleaned_data["active_version"]
            changes["active_version"] = version.number if version else None
        if not change:
            changes = {**{f: form.cleaned_data[f] for f in services.SETTINGS if f in form.cleaned_data}, **changes}
        saved = services.configure_deployment(actor=Actor.from_request(request), model=form.cleaned_data["model"],
                                              changes=changes)
        obj.pk = saved.pk  # the admin's own log and redirect refer to the saved row
        obj._state.adding = False
