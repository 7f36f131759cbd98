"""The registry in the Django admin: a model is created, changed and deleted through the
registry's audited services; versions and aliases are read-only here."""

from collections import Counter
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils.text import capfirst

from console.admin import AuditedAdmin, ReadOnlyAdmin
from console.audit import Actor
from console.errors import PaddockError
from registry import services
from registry.models import Alias, ModelVersion, RegisteredModel


class RegisteredModelForm(forms.ModelForm):
    class Meta:
        model = RegisteredModel
        fields = ["name", "team", "description", "tags"]

    def clean_tags(self) -> list[str]:
        try:
            return services.check_tags(self.cleaned_data["tags"])
        except PaddockError as exc:
            raise forms.ValidationError(exc.message) from None


@admin.register(RegisteredModel)
class RegisteredModelAdmin(AuditedAdmin):
    """Models are created, changed and deleted through the registry's services, as from the API:
    a delete removes its versions, aliases, deployment and rollouts too, one event per row."""

    form = RegisteredModelForm
    list_display = ["name", "team", "owner", "created_at"]
    search_fields = ["name", "description"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # A model's name is in its artifacts' paths, its routes and tokens' model lists: fixed once made.
        return ["name", "owner", "created_at"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        actor, data = Actor.from_request(request), form.cleaned_data
        if change:
            saved = services.update_model(actor=actor, model=obj, description=data["description"], tags=data["tags"],
                                          team=data["team"])
        else:
            saved = services.create_model(actor=actor, name=data["name"], team=data["team"],
                                          description=data["description"], tags=data["tags"])
        obj.pk = saved.pk  # the admin's own log and redirect refer to the saved row
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        services.delete_model(actor=Actor.from_request(request), model=obj)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[list[Any], dict[str, int], set[str],
                                                                            list[Any]]:
        """What the confirmation page lists: the rows `delete_model` removes. Django's own walk
        would stop at the versions' PROTECTed links, which the service deletes in order."""
        listed: list[Any] = []
        counts: Counter[str] = Counter()
        for model in objs:
            rows = [row for _, row, _ in services.rows_removed_with(model)]
            listed += [f"Registered model: {model}", [f"{capfirst(row._meta.verbose_name)}: {row}" for row in rows]]
            counts.update(str(row._meta.verbose_name_plural) for row in [model, *rows])
        return listed, dict(counts), set(), []


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    """Versions are immutable and uploaded through the console or API: read-only here."""

    list_display = ["model", "number", "format", "status", "created_at"]
    list_filter = ["status", "format"]


@admin.register(Alias)
class AliasAdmin(ReadOnlyAdmin):
    list_display = ["model", "name", "version", "updated_at"]
