"""The console's recurring jobs: the "Schedules" card of a model's jobs page (loaded by htmx),
with its create form and the enable, disable and delete buttons, each answering with the card.
Without htmx, a GET or a change lands back on the jobs page. Thin: serving.jobs.schedules does the work."""

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from console.access import can_change_team, require_engineer, visible_model_or_404
from console.audit import Actor
from console.errors import InvalidInput, PaddockError
from console.htmx import CardAction, card_action, htmx_partial
from registry.models import RegisteredModel
from serving.jobs import schedules, services
from serving.models import BatchJob, JobSchedule

FRAGMENT = "serving/partials/_job_schedules.html"
FORM_FIELDS = ("name", "cron", "template", "version")
ACTIONS: dict[str, CardAction[JobSchedule]] = {
    "enable": CardAction(lambda actor, s: schedules.enable_schedule(actor=actor, schedule=s), "enabled"),
    "disable": CardAction(lambda actor, s: schedules.disable_schedule(actor=actor, schedule=s), "disabled"),
    "delete": CardAction(lambda actor, s: schedules.delete_schedule(actor=actor, schedule=s), "deleted"),
}
TEMPLATES_SHOWN = 50


def card_context(request: HttpRequest, model: RegisteredModel, **extra: Any) -> dict[str, Any]:
    """What the card shows: each schedule with its next run, last runs and last refusal; the jobs
    a schedule may repeat (their files remain) and the ready versions, for the form."""
    rows = [{"schedule": s, "next_run_at": schedules.next_run_at(s), "runs": schedules.recent_runs(s),
             "failure": schedules.last_failure(s)}
            for s in JobSchedule.objects.select_related("version", "template").filter(model=model)]
    templates = BatchJob.objects.select_related("version").filter(model=model, files_removed_at__isnull=True)
    return {"model": model, "loaded": True, "rows": rows, "can_change": can_change_team(request.user, model.team_id),
            "templates": templates[:TEMPLATES_SHOWN], "versions": model.versions.filter(status="ready").order_by(
                "-number"), "form": {}, "error": "", "notice": "", **extra}


def _answer(request: HttpRequest, model: RegisteredModel, context: dict[str, Any],
            status: int = 200) -> HttpResponseBase:
    """The card for htmx; without it, back to the jobs page (a refusal: the card, with its message)."""
    if not htmx_partial(request) and status < 400:
        return redirect("serving:job_list", name=model.name)
    return render(request, FRAGMENT, context, status=status)


def _version(raw: str) -> int | None:
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput("'version' must be a whole number") from None


@login_required
@vary_on_headers("HX-Request")
@require_http_methods(["GET", "POST"])
def job_schedules(request: HttpRequest, name: str) -> HttpResponseBase:
    """The card (for htmx; else back to the jobs page); POST creates a schedule (engineers)."""
    model = visible_model_or_404(request, name)
    if request.method == "GET":
        return _answer(request, model, card_context(request, model))
    form = {field: request.POST.get(field, "").strip() for field in FORM_FIELDS}
    try:
        require_engineer(request.user, model)
        template = services.find_job(model, form["template"])
        if template is None:
            raise InvalidInput("choose the job each run repeats")
        schedule = schedules.create_schedule(actor=Actor.from_request(request), model=model, name=form["name"],
                                             cron=form["cron"], template=template, version=_version(form["version"]))
    except PaddockError as exc:
        return _answer(request, model, card_context(request, model, form=form, error=exc.message), exc.http_status)
    notice = f"Schedule '{schedule.name}' created: {schedule.cron} (UTC)."
    return _answer(request, model, card_context(request, model, notice=notice), 201)


@login_required
@require_POST
def job_schedule_action(request: HttpRequest, name: str, schedule: str, action: str) -> HttpResponseBase:
    """Enable, disable or delete a schedule (engineers of the model's team); answers with the card."""
    model = visible_model_or_404(request, name)
    return card_action(
        request, action, actions=ACTIONS, what="schedules", check=lambda: require_engineer(request.user, model),
        find=lambda: schedules.find_schedule(model, schedule),
        missing=f"model '{model.name}' has no schedule '{schedule}'", label=f"Schedule '{schedule}'",
        card=lambda extra, status: _answer(request, model, card_context(request, model, **extra), status),
        back=reverse("serving:job_list", kwargs={"name": model.name}))

