"""Console pages on the people's side: API tokens (the audit log's pages are console/audit_views.py)."""

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from console import services
from console.audit import Actor
from console.choices import Scope
from console.errors import PaddockError
from console.models import ApiToken


@login_required
@require_http_methods(["GET", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    created_raw = None
    if request.method == "POST":
        days = request.POST.get("expires_days", "").strip()
        try:
            expires_at = timezone.now() + timedelta(days=int(days)) if days else None
            models = [n.strip() for n in request.POST.get("model_names", "").split(",") if n.strip()]
            _, created_raw = services.create_token(
                actor=Actor.from_request(request), user=request.user,
                name=request.POST.get("name", "").strip() or "unnamed",
                scopes=request.POST.getlist("scopes"), model_names=models, expires_at=expires_at,
            )
        except ValueError:
            messages.error(request, "Expiry must be a whole number of days.")
        except PaddockError as exc:
            messages.error(request, exc.message)
    assert request.user.is_authenticated  # login_required says so; this tells mypy
    tokens = ApiToken.objects.filter(user=request.user)
    return render(request, "console/tokens.html", {
        "tokens": tokens, "created_raw": created_raw, "scopes": Scope.choices,
        "can_admin": request.user.is_superuser,
    })


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponseBase:
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    services.revoke_token(actor=Actor.from_request(request), token=token)
    messages.success(request, f"Token '{token.name}' revoked.")
    return redirect("console:token_list")
