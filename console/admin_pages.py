"""What the console's admin-only pages (the audit log, the approval inbox) share: the check, and
a refusal that says why, in its status, as a page or (for htmx) as the fragment forms.js shows
in the form's error slot."""

import functools
from collections.abc import Callable

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render

from console.htmx import htmx_partial


def refuse(request: HttpRequest, message: str, status: int) -> HttpResponse:
    """The refusal page, or its message alone (role="alert") for an htmx request."""
    template = "console/partials/_refusal.html" if htmx_partial(request) else "console/refusal.html"
    return render(request, template, {"message": message, "status": status}, status=status)


def admin_only(message: str) -> Callable[[Callable[..., HttpResponseBase]], Callable[..., HttpResponseBase]]:
    """Signed in (else the login page), and an admin (else 403 with `message`)."""
    def decorate(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @login_required
        @functools.wraps(view)
        def checked(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponseBase:
            if not request.user.is_superuser:
                return refuse(request, message, 403)
            return view(request, *args, **kwargs)
        return checked
    return decorate
