"""The console's webhooks: a page per team with its webhooks (the create form shows a new
webhook's secret once) and the log of deliveries (status, response code, time; refreshed every
2 s, a redeliver button on each). One view serves each page and its fragment; the buttons answer
with the fragment they change. Thin: the services do the work."""

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from console.access import can_change_team
from console.audit import Actor
from console.errors import NotFound, PaddockError
from console.htmx import CardAction, card_action, htmx_partial
from console.models import Team
from webhooks import services
from webhooks.access import get_visible_team, require_team_engineer, visible_teams
from webhooks.choices import EVENTS
from webhooks.models import Delivery, Webhook

WEBHOOKS = "webhooks/partials/_webhooks.html"
DELIVERIES = "webhooks/partials/_deliveries.html"
LOG_LENGTH = 50
ACTIONS: dict[str, CardAction[Webhook]] = {
    "pause": CardAction(lambda actor, w: services.set_webhook_active(actor=actor, webhook=w, active=False), "paused"),
    "resume": CardAction(lambda actor, w: services.set_webhook_active(actor=actor, webhook=w, active=True), "resumed"),
    "delete": CardAction(lambda actor, w: services.delete_webhook(actor=actor, webhook=w), "deleted"),
}


def _team(request: HttpRequest, name: str) -> Team:
    try:
        return get_visible_team(request.user, name)
    except NotFound as exc:
        raise Http404(exc.message) from None


def webhooks_context(request: HttpRequest, team: Team, **extra: Any) -> dict[str, Any]:
    """What the webhooks card shows: the team's webhooks, the events to choose from, and whether
    the person may change them."""
    return {"team": team, "webhooks": Webhook.objects.filter(team=team).select_related("created_by"),
            "events": EVENTS, "can_change": can_change_team(request.user, team.pk), "form": {}, "error": "",
            "notice": "", "secret": "", "max_attempts": settings.PADDOCK_WEBHOOK_MAX_ATTEMPTS, **extra}


def deliveries_context(request: HttpRequest, team: Team, **extra: Any) -> dict[str, Any]:
    """The log: the team's latest deliveries (of one webhook with `?webhook=<id>`)."""
    deliveries = Delivery.objects.filter(webhook__team=team).select_related("webhook")
    chosen = request.GET.get("webhook", "")
    if chosen.isascii() and chosen.isdigit():
        deliveries = deliveries.filter(webhook_id=int(chosen))
    return {"team": team, "deliveries": deliveries[:LOG_LENGTH], "chosen": chosen,
            "can_change": can_change_team(request.user, team.pk), "error": "", "notice": "", **extra}


@login_required
def team_list(request: HttpRequest) -> HttpResponseBase:
    """The teams whose webhooks the person sees; straight to the one when there is one."""
    teams = list(visible_teams(request.user).annotate(webhook_count=Count("webhooks")).order_by("name"))
    if len(teams) == 1:
        return redirect("webhooks:webhook_list", team=teams[0].name)
    return render(request, "webhooks/teams.html", {"teams": teams})


def _webhooks_answer(request: HttpRequest, team: Team, context: dict[str, Any], status: int = 200) -> HttpResponse:
    if htmx_partial(request):
        return render(request, WEBHOOKS, context, status=status)
    return render(request, "webhooks/webhooks.html", {**deliveries_context(request, team), **context}, status=status)


@login_required
@vary_on_headers("HX-Request")
@require_http_methods(["GET", "POST"])
def webhook_list(request: HttpRequest, team: str) -> HttpResponseBase:
    """The team's webhooks page (the card for htmx); POST makes a webhook (engineers) and shows
    its secret, this once."""
    found = _team(request, team)
    if request.method == "GET":
        return _webhooks_answer(request, found, webhooks_context(request, found))
    form = {"url": request.POST.get("url", "").strip(), "events": request.POST.getlist("events")}
    try:
        require_team_engineer(request.user, found)
        webhook, secret = services.create_webhook(actor=Actor.from_request(request), team=found,
                                                  url=form["url"], events=form["events"])
    except PaddockError as exc:
        context = webhooks_context(request, found, form=form, error=exc.message)
        return _webhooks_answer(request, found, context, exc.http_status)
    notice = f"Webhook {webhook.pk} created: {webhook.url}. Copy its secret now, it is not shown again."
    return _webhooks_answer(request, found, webhooks_context(request, found, notice=notice, secret=secret), 201)


@login_required
@require_POST
def webhook_action(request: HttpRequest, team: str, webhook_id: int, action: str) -> HttpResponseBase:
    """Pause, resume or delete a webhook (engineers); answers with the card."""
    found = _team(request, team)
    return card_action(
        request, action, actions=ACTIONS, what="webhooks", check=lambda: require_team_engineer(request.user, found),
        find=lambda: Webhook.objects.select_related("team").filter(team=found, pk=webhook_id).first(),
        missing=f"team '{found.name}' has no webhook {webhook_id}", label=f"Webhook {webhook_id}",
        card=lambda extra, status: _webhooks_answer(request, found, webhooks_context(request, found, **extra), status),
        back=reverse("webhooks:webhook_list", kwargs={"team": found.name}))


@login_required
@vary_on_headers("HX-Request")
def delivery_list(request: HttpRequest, team: str) -> HttpResponseBase:
    """The log of deliveries: its fragment for htmx (polled), else the team's page."""
    found = _team(request, team)
    if htmx_partial(request):
        return render(request, DELIVERIES, deliveries_context(request, found))
    return redirect("webhooks:webhook_list", team=found.name)


@login_required
@require_POST
def delivery_redeliver(request: HttpRequest, team: str, delivery_id: int) -> HttpResponseBase:
    """Send a delivery again (engineers); answers with the log, the new delivery on top."""
    found = _team(request, team)
    try:
        require_team_engineer(request.user, found)
        delivery = Delivery.objects.filter(webhook__team=found, pk=delivery_id).first()
        if delivery is None:
            raise NotFound(f"team '{found.name}' has no delivery {delivery_id}")
        again = services.redeliver(actor=Actor.from_request(request), delivery=delivery)
    except PaddockError as exc:
        context = deliveries_context(request, found, error=exc.message)
        return render(request, DELIVERIES, context, status=exc.http_status)
    if not htmx_partial(request):
        return redirect("webhooks:webhook_list", team=found.name)
    notice = f"Delivery {delivery_id} queued again as delivery {again.pk}."
    return render(request, DELIVERIES, deliveries_context(request, found, notice=notice), status=202)
