"""Paddock's admin site: Django's, with the one page that has no ModelAdmin hook audited."""

from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.db import transaction
from django.http import HttpRequest
from django.template.response import TemplateResponse


class PaddockAdminSite(admin.AdminSite):
    """The admin site of `console/urls.py`; every ModelAdmin on it is audited (console/admin.py)."""

    def password_change(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        """The admin's "change my password" page, in one transaction with its audit event."""
        from console import services
        from console.audit import Actor

        with transaction.atomic():
            response = super().password_change(request, extra_context)
            if request.method == "POST" and response.status_code == 302:  # Django redirects once it is saved
                services.audit_password_change(actor=Actor.from_request(request), user=request.user)
        return response


class PaddockAdminConfig(AdminConfig):
    """django.contrib.admin with PaddockAdminSite as `admin.site`."""

    default_site = "console.sites.PaddockAdminSite"
