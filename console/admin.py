"""Django admin: every change made here is audited in the admin's own transaction, writes that
touch several rows go through the services, and audit events are read-only."""

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm
from django.contrib.auth.models import Group
from django.db import router, transaction
from django.db.models import Model
from django.forms.models import model_to_dict
from django.http import HttpRequest, HttpResponse

from console import services
from console.audit import Actor, record_event
from console.models import ApiToken, AuditEvent, Membership, Team

_HIDDEN = {"password", "digest"}


def snapshot(obj: Model, form: Any = None) -> dict[str, Any]:
    """The row as the audit log shows it, secrets left out. Given the form that saves it, its
    many-to-many fields are the form's (the admin saves them only after the row)."""
    data = model_to_dict(obj)
    for field in obj._meta.many_to_many:
        if form is not None and field.name in form.cleaned_data:
            data[field.name] = list(form.cleaned_data[field.name])
    return {key: value for key, value in data.items() if key not in _HIDDEN}


def _action(obj: Model, verb: str) -> str:
    return f"{obj._meta.model_name}.{verb}"


class AuditedAdmin(admin.ModelAdmin):
    """One audit event per row saved or deleted, inside the admin's transaction: Django runs the
    add, change and delete views atomically, and the bulk delete is made atomic here. Admins of
    rows whose delete cascades override `delete_model` with their service."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        before = snapshot(type(obj)._default_manager.get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)
        record_event(actor=Actor.from_request(request), action=_action(obj, "update" if change else "create"),
                     obj=obj, before=before, after=snapshot(obj, form))

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        actor = Actor.from_request(request)
        stored: dict[Any, dict[str, Any]] = {}
        for formset in formsets:
            for inline in formset.initial_forms:
                row = inline.instance
                if inline in formset.deleted_forms:  # described now: once deleted, a row has no pk
                    record_event(actor=actor, action=_action(row, "delete"), obj=row, before=snapshot(row))
                elif inline.has_changed():  # the form has already set its new values on the instance
                    stored[type(row), row.pk] = snapshot(type(row)._default_manager.get(pk=row.pk))
        super().save_related(request, form, formsets, change)
        for formset in formsets:
            for obj in formset.new_objects:
                record_event(actor=actor, action=_action(obj, "create"), obj=obj, after=snapshot(obj))
            for obj, _ in formset.changed_objects:
                record_event(actor=actor, action=_action(obj, "update"), obj=obj, before=stored[type(obj), obj.pk],
                             after=snapshot(obj))

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        record_event(actor=Actor.from_request(request), action=_action(obj, "delete"), obj=obj, before=snapshot(obj))
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        """The "delete selected" action: one transaction, one `delete_model` per row."""
        with transaction.atomic(using=router.db_for_write(self.model)):
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


class TeamForm(forms.ModelForm):
    """The admin's team form: a name Paddock's own Redis keys start with is refused, as by the service."""

    class Meta:
        model = Team
        fields = ["name", "description"]

    def clean_name(self) -> str:
        """Refuse the reserved names (console.services.reserved_team_names)."""
        name: str = self.cleaned_data["name"]
        if name in services.reserved_team_names():
            raise forms.ValidationError(f"'{name}' is reserved: Paddock's own Redis keys start with '{name}:'")
        return name


@admin.register(Team)
class TeamAdmin(AuditedAdmin):
    form = TeamForm
    list_display = ["name", "description"]
    inlines = [MembershipInline]

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        services.delete_team(actor=Actor.from_request(request), team=obj)


User = get_user_model()
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(AuditedAdmin, UserAdmin):
    inlines = [MembershipInline]

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        services.delete_user(actor=Actor.from_request(request), user=obj)

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        """Django's view in one transaction, so that the password and its audit event commit together."""
        with transaction.atomic(using=router.db_for_write(self.model)):
            return super().user_change_password(request, id, form_url)

    def construct_change_message(self, request: HttpRequest, form: Any, formsets: Any, add: bool = False) -> Any:
        if isinstance(form, AdminPasswordChangeForm):
            # The password view calls this right after form.save(), inside the transaction above.
            services.audit_password_change(actor=Actor.from_request(request), user=form.user)
        return super().construct_change_message(request, form, formsets, add)


@admin.register(Group)
class AuditedGroupAdmin(AuditedAdmin, GroupAdmin):
    """Groups and their permissions, audited like every other change made here."""


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
