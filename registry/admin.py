
from django.contrib import admin

from console.admin import AuditedAdmin, ReadOnlyAdmin
from registry.models import Alias, ModelVersion, RegisteredModel


@admin.register(RegisteredModel)
class RegisteredModelAdmin(AuditedAdmin):
    list_display = ["name", "team", "owner", "created_at"]
    search_fields = ["name", "description"]


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    """Versions are immutable and uploaded through the console or API: read-only here."""

    list_display = ["model", "number", "format", "status", "created_at"]
    list_filter = ["status", "format"]


@admin.register(Alias)
class AliasAdmin(ReadOnlyAdmin):
    list_display = ["model", "name", "version", "updated_at"]
