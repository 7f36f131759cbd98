"""Deployments in the Django admin, saved and deleted through serving.services; rollouts read-only."""

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from console.admin import AuditedAdmin, ReadOnlyAdmin
from console.audit import Actor
from console.errors import PaddockError
from serving import services
from serving.models import Deployment, Rollout, RolloutEvent


class DeploymentForm(forms.ModelForm):
    class Meta:
        model = Deployment
        fields = ["model", "active_version", "max_batch_size", "max_queue_delay_ms", "preferred_batch_sizes",
                  "max_queue_depth", "default_timeout_ms", "min_workers", "instances", "routes", "shadow_version",
                  "shadow_percent", "sticky_by", "sticky_key"]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        model = data.get("model")
        if model is not None and "routes" in self.changed_data:
            try:
                data["routes"] = services.check_routes(model, data.get("routes"))
            except PaddockError as exc:
                self.add_error("routes", exc.message)
        return data


@admin.register(Deployment)
class DeploymentAdmin(AuditedAdmin):
    form = DeploymentForm
    list_display = ["model", "active_version", "max_batch_size", "max_queue_delay_ms", "max_queue_depth",
                    "default_timeout_ms", "min_workers", "updated_at"]
    readonly_fields = ["standby_version", "updated_at", "updated_by"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # The service validates, stamps and audits, exactly as for the API.
        fields = (*services.SETTINGS, *services.TRAFFIC)
        changes = {field: form.cleaned_data[field] for field in form.changed_data if field in fields}
        for field in ("active_version", "shadow_version"):
            if field in form.changed_data:
                version = form.cleaned_data[field]
                changes[field] = version.number if version else None
        if not change:
            changes = {**{f: form.cleaned_data[f] for f in services.SETTINGS if f in form.cleaned_data}, **changes}
        saved = services.configure_deployment(actor=Actor.from_request(request), model=form.cleaned_data["model"],
                                              changes=changes)
        obj.pk = saved.pk  # the admin's own log and redirect refer to the saved row
        obj._state.adding = False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # While a rollout steers a deployment, its delete page and the bulk delete refuse it.
        return super().has_delete_permission(request, obj) and not (obj and services.deployment_is_steered(obj))

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        services.delete_deployment(actor=Actor.from_request(request), deployment=obj)


class RolloutEventInline(admin.TabularInline):
    model = RolloutEvent
    extra = 0
    can_delete = False
    readonly_fields = ["at", "kind", "message", "figures", "actor"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Rollout)
class RolloutAdmin(ReadOnlyAdmin):
    """Rollouts are started and steered from the console or the API (audited there)."""

    list_display = ["model", "strategy", "stable_version", "candidate_version", "state", "step_index", "created_at"]
    list_filter = ["state", "strategy"]
    inlines = [RolloutEventInline]
