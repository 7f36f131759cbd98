"""Django admin: every change made here is audited; audit events are read-only."""

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import Model
from django.forms.models import model_to_dict
from django.http import HttpRequest

from console.audit import Actor, record_event
from console.models import ApiToken, AuditEvent, Membership, Team

_HIDDEN = {"password", "digest"}


def snapshot(obj: Model) -> dict[str, Any]:
    data = model_to_dict(obj)
    return {key: value for key, value in data.items() if key not in _HIDDEN}


class AuditedAdmin(admin.ModelAdmin):
    """Writes one audit event per save or delete, in the admin's own transaction."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        before = snapshot(type(obj).objects.get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)
        action = f"{obj._meta.model_name}.{'update' if change else 'create'}"
        record_event(actor=Actor.from_request(request), action=action, obj=obj, before=before, after=snapshot(obj))

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        for formset in formsets:
            for obj in formset.new_objects + [o for o, _ in formset.changed_objects]:
                record_event(actor=Actor.from_request(request), action=f"{obj._meta.model_name}.save",
                             obj=obj, after=snapshot(obj))
            for obj in formset.deleted_objects:
                record_event(actor=Actor.from_request(request), action=f"{obj._meta.model_name}.delete",
                             object_type=obj._meta.label_lower, object_id=str(obj.pk), before=snapshot(obj))

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        record_event(actor=Actor.from_request(request), action=f"{obj._meta.model_name}.delete", obj=obj,
                     before=snapshot(obj))
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for obj in queryset:
            self.delete_model(request, obj)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Visible in the admin, never changed there (changes go through audited services)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1


@admin.register(Team)
class TeamAdmin(AuditedAdmin):
    list_display = ["name", "description"]
    inlines = [MembershipInline]


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class AuditedUserAdmin(AuditedAdmin, UserAdmin):  # type: ignore[misc]
    inlines = [MembershipInline]


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """Tokens are created and revoked through the console or the API (audited there)."""

    list_display = ["name", "prefix", "user", "scopes", "expires_at", "last_used_at", "revoked_at"]
    readonly_fields = [f.name for f in ApiToken._meta.fields]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor_username", "action", "object_repr", "client_address"]
    list_filter = ["action", "object_type"]
    search_fields = ["actor_username", "object_repr", "request_id"]
    readonly_fields = [f.name for f in AuditEvent._meta.fields]
