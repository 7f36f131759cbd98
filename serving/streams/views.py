"""The console's stream bindings: a card of the model page (loaded by htmx, its table refreshed
every 2 s so the lag moves) and a page of its own, one view for both; the create form and the
pause, resume and delete buttons answer with the card. Thin: the services do the work."""

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from console.access import can_change_team, require_engineer, visible_model_or_404
from console.audit import Actor
from console.errors import InvalidInput, PaddockError
from console.htmx import CardAction, card_action, htmx_partial
from registry.models import RegisteredModel
from serving.models import StreamBinding
from serving.models.streams import redacted_url
from serving.streams import services

FRAGMENT = "serving/partials/_stream_bindings.html"
FORM_FIELDS = ("name", "source", "sink", "dead_letter", "start", "output_format", "batch_size")
ACTIONS: dict[str, CardAction[StreamBinding]] = {
    "pause": CardAction(lambda actor, b: services.pause_binding(actor=actor, binding=b), "paused"),
    "resume": CardAction(lambda actor, b: services.resume_binding(actor=actor, binding=b), "resumed"),
    "delete": CardAction(lambda actor, b: services.delete_binding(actor=actor, binding=b), "deleted"),
}


def card_context(request: HttpRequest, model: RegisteredModel, **extra: Any) -> dict[str, Any]:
    """What the card shows: each binding with its figures (None while Redis is unreachable),
    and whether the person may change them."""
    bindings = list(StreamBinding.objects.filter(model=model))
    found = services.figures(bindings)
    return {"model": model, "loaded": True, "figures_missing": found is None,
            "rows": [{"binding": b, "figures": (found or {}).get(b.pk), "redis": redacted_url(b.redis_url)}
                     for b in bindings],
            "can_change": can_change_team(request.user, model.team_id), "starts": services.STARTS,
            "output_formats": services.OUTPUT_FORMATS, "form": {}, "error": "", "notice": "", **extra}


def _answer(request: HttpRequest, context: dict[str, Any], status: int = 200) -> HttpResponse:
    template = FRAGMENT if htmx_partial(request) else "serving/streams.html"
    return render(request, template, context, status=status)


def _batch_size(raw: str) -> int:
    if not raw.strip():
        return 256
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(f"'batch_size' must be a whole number from 1 to {services.MAX_BATCH}") from None


@login_required
@vary_on_headers("HX-Request")
@require_http_methods(["GET", "POST"])
def stream_bindings(request: HttpRequest, name: str) -> HttpResponseBase:
    """The model's bindings (the card for htmx, else the page); POST creates one (engineers)."""
    model = visible_model_or_404(request, name)
    if request.method == "GET":
        return _answer(request, card_context(request, model))
    form = {field: request.POST.get(field, "").strip() for field in FORM_FIELDS}
    try:
        require_engineer(request.user, model)
        binding = services.create_binding(
            actor=Actor.from_request(request), model=model, name=form["name"], source=form["source"],
            sink=form["sink"], dead_letter=form["dead_letter"], start=form["start"] or "0",
            output_format=form["output_format"] or "json", batch_size=_batch_size(form["batch_size"]))
    except PaddockError as exc:
        return _answer(request, card_context(request, model, form=form, error=exc.message), exc.http_status)
    if not htmx_partial(request):
        return redirect("serving:stream_bindings", name=model.name)
    notice = f"Stream binding '{binding.name}' created: {binding.source} → {binding.sink}."
    return _answer(request, card_context(request, model, notice=notice), 201)


@login_required
@require_POST
def stream_binding_action(request: HttpRequest, name: str, binding: str, action: str) -> HttpResponseBase:
    """Pause, resume or delete a binding (engineers of the model's team); answers with the card."""
    model = visible_model_or_404(request, name)
    return card_action(
        request, action, actions=ACTIONS, what="stream bindings", check=lambda: require_engineer(request.user, model),
        find=lambda: services.find_binding(model, binding),
        missing=f"model '{model.name}' has no stream binding '{binding}'", label=f"Stream binding '{binding}'",
        card=lambda extra, status: _answer(request, card_context(request, model, **extra), status),
        back=reverse("serving:stream_bindings", kwargs={"name": model.name}))
