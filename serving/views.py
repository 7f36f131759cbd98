"""Console pages of the serving side: a model's traffic and rollouts (fragments of the model
page, htmx), and the dashboard across every model the person can see."""

from typing import Any

import redis
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST
from django.views.decorators.vary import vary_on_headers

from console.access import can_change_team, get_visible_model, visible_models
from console.audit import Actor
from console.errors import Forbidden, InvalidInput, NotFound, PaddockError
from console.htmx import htmx_partial
from registry.models import RegisteredModel
from serving import live, livestats, rollouts
from serving.approvals import decide_rollout
from serving.forms import GATE_FIELDS
from serving.jobs import progress
from serving.metrics import live_workers, workers_seen_by
from serving.models import BatchJob, JobState, Rollout, RolloutState, StreamBinding
from serving.streams import status
from serving.v2.routes import ModelRoute, load_model_route


def _model(request: HttpRequest, name: str) -> RegisteredModel:
    try:
        return get_visible_model(request.user, name)
    except NotFound as exc:
        raise Http404(exc.message) from None


def panel_context(request: HttpRequest, model: RegisteredModel, error: str = "") -> dict[str, Any]:
    """What the traffic panel shows: the split as a bar, the live rollout and its timeline."""
    route = load_model_route(model.name)
    weights = route.weights if route else []
    current = Rollout.objects.filter(model=model).select_related(
        "stable_version", "candidate_version", "approved_by").prefetch_related("events").first()
    live_rollout = current is not None and current.state in RolloutState.live()
    return {
        "model": model, "weights": weights, "shadow": route.shadow if route else None,
        "standby": route.standby if route else None, "rollout": current, "live": live_rollout,
        "serving": route.active if route else None,  # the rollout form leaves it out of the candidates
        "serving_reason": serving_reason(route, current if live_rollout else None),
        "can_change": can_change_team(request.user, model.team_id), "error": error,
    }


def serving_reason(route: ModelRoute | None, rollout: Rollout | None) -> str:
    """Why the model's traffic goes where it does, in a sentence for its page: uploading a
    version never changes it, so the answer always names what a person (or the first ready
    version's crowning) did. Read from the route alone: the panel refreshes every 2 s."""
    weights = route.weights if route else []
    if rollout is not None:
        kind = rollout.get_strategy_display().split(":", 1)[0]  # "canary", "blue/green", "A/B", "shadow"
        if kind == "shadow":
            return (f"v{rollout.stable_version.number} serves; a shadow rollout mirrors its requests to "
                    f"v{rollout.candidate_version.number}")
        return (f"{'an' if kind == 'A/B' else 'a'} {kind} rollout is moving traffic from "
                f"v{rollout.stable_version.number} to v{rollout.candidate_version.number}")
    if len(weights) > 1:
        return "the deployment splits traffic between these versions"
    if not weights:
        return ("no version serves: none carries the champion alias and the deployment names none; "
                "promote a ready version (set its champion alias, or start a rollout)")
    number = weights[0][0]
    if route is not None and route.active_from == "deployment" and route.active == number:
        return f"the deployment names v{number} (promoted); newer versions serve only when promoted"
    return f"v{number} carries the champion alias; newer versions serve only when promoted"


@login_required
def traffic_panel(request: HttpRequest, name: str) -> HttpResponse:
    return render(request, "serving/_traffic_panel.html", panel_context(request, _model(request, name)))


def _number(raw: str, name: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a number") from None


def _whole(raw: str, name: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number") from None


@login_required
@require_POST
def rollout_start(request: HttpRequest, name: str) -> HttpResponse:
    model = _model(request, name)
    error, status = "", 200
    try:
        if not can_change_team(request.user, model.team_id):
            raise Forbidden(f"the engineer role in team '{model.team.name}' is required to change this model")
        form = request.POST
        steps = [_number(s.strip(), "each step") for s in form.get("steps", "").split(",") if s.strip()]
        gates = {gate.name: _number(form[gate.name], gate.label) for gate in GATE_FIELDS
                 if form.get(gate.name, "").strip()}
        rollouts.start_rollout(
            actor=Actor.from_request(request), model=model, candidate=_whole(form.get("candidate") or "0", "candidate"),
            strategy=form.get("strategy", ""), steps=steps or None,
            step_seconds=_whole(form.get("step_seconds") or "60", "step seconds"), gates=gates,
            require_approval=form.get("require_approval") == "on",
            auto_promote=form.get("auto_promote", "on") == "on",
            sticky_by=form.get("sticky_by", ""), sticky_key=form.get("sticky_key", "").strip())
    except PaddockError as exc:
        error, status = exc.message, exc.http_status
    return render(request, "serving/_traffic_panel.html", panel_context(request, model, error), status=status)


@login_required
@require_POST
def rollout_action(request: HttpRequest, name: str, rollout_id: int, action: str) -> HttpResponse:
    model = _model(request, name)
    rollout = Rollout.objects.filter(model=model, pk=rollout_id).first()
    if rollout is None:
        raise Http404(f"model '{name}' has no rollout {rollout_id}")
    error, status = "", 200
    try:
        if not can_change_team(request.user, model.team_id):
            raise Forbidden(f"the engineer role in team '{model.team.name}' is required to change this model")
        actor, reason = Actor.from_request(request), request.POST.get("reason", "").strip()
        if action == "approve":  # as from the approvals inbox: an admin, with a reason
            decide_rollout(actor=actor, rollout=rollout, decision="approve", reason=reason)
        else:
            rollouts.control(actor=actor, rollout=rollout, action=action, reason=reason)
    except PaddockError as exc:
        error, status = exc.message, exc.http_status
    return render(request, "serving/_traffic_panel.html", panel_context(request, model, error), status=status)


def _dashboard_row(model: RegisteredModel, figures: dict[str, Any]) -> dict[str, Any]:
    versions = figures["versions"]
    requests = sum(v["summary"]["requests"] for v in versions)
    errors = sum(v["summary"]["errors"] for v in versions)
    p99s = [v["summary"]["latency_ms"]["total"]["p99"] for v in versions
            if v["summary"]["latency_ms"]["total"]["p99"] is not None]
    return {"model": model, "routes": figures["routes"], "shadow": figures["shadow"],
            "rps": round(requests / figures["seconds"], 2), "errors": errors,
            "error_rate": errors / requests if requests else 0.0,
            "p99": max(p99s) if p99s else None,
            "queued": sum(v["queue_depth"] for v in versions),
            # Prefetched below: only live rollouts, at most one per model (a database constraint).
            "rollout": next(iter(model.rollouts.all()), None)}


def _stream_figures(conn: Any, ids: list[int]) -> dict[int, dict[str, Any]]:
    try:
        return status.read_all(conn, ids)
    except redis.RedisError:
        return {}  # the page answers without the figures while Redis is down


@login_required
@vary_on_headers("HX-Request")  # one URL, two answers: caches keep the page and the fragment apart
def dashboard(request: HttpRequest) -> HttpResponse:
    """Every visible model's traffic over the last minute, and the workers; the same queries
    however many models (routes and live rollouts are read for all of them at once)."""
    conn = livestats.client()
    live_rollouts = Rollout.objects.filter(state__in=RolloutState.live()).select_related("candidate_version")
    models = list(visible_models(request.user).order_by("name").prefetch_related(
        Prefetch("rollouts", queryset=live_rollouts)))
    figures = live.models_figures(models, 60, conn)
    rows = sorted((_dashboard_row(model, figures[model.pk]) for model in models), key=lambda row: -(row["p99"] or 0))
    admin = request.user.is_superuser
    workers = workers_seen_by(live_workers(conn), model_names=None if admin else {m.name for m in models},
                              details=admin)
    visible = [model.pk for model in models]
    bindings = list(StreamBinding.objects.filter(model_id__in=visible).select_related("model"))
    stream_figures = _stream_figures(conn, [binding.pk for binding in bindings])
    jobs = [(job, min(job.rows_total, max(job.rows_done, progress.rows_done(job.pk) or 0))) for job in
            BatchJob.objects.filter(model_id__in=visible, state__in=JobState.live()).select_related("model")]
    context = {"rows": rows, "workers": sorted(workers.items()), "worker_details": admin, "jobs": jobs,
               "bindings": [(binding, stream_figures.get(binding.pk, {})) for binding in bindings]}
    template = "serving/_dashboard_body.html" if htmx_partial(request) else "serving/dashboard.html"
    return render(request, template, context)
