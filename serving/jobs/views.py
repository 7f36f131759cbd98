"""The console's batch-job pages: a model's jobs with the submit form (upload progress from the
browser), one job with its progress bar (an htmx fragment polling itself every second while the
job is live), cancel, and the output's download. Thin: the services do the work."""

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from console.access import can_change_team, visible_model_or_404
from console.audit import Actor
from console.errors import PaddockError
from console.htmx import htmx_partial
from registry.models import RegisteredModel
from serving.api.jobs import JobSerializer
from serving.jobs import services
from serving.jobs.files import FORMATS
from serving.models import BatchJob


def _job_or_404(model: RegisteredModel, job_id: str) -> BatchJob:
    job = services.find_job(model, job_id)
    if job is None:
        raise Http404(f"model '{model.name}' has no job {job_id}")
    return job


def _int_or_none(raw: str | None, field: str) -> int | None:
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise PaddockError(f"'{field}' must be a whole number") from None


@login_required
@vary_on_headers("HX-Request")
@require_http_methods(["GET", "POST"])
def job_list(request: HttpRequest, name: str) -> HttpResponse:
    """The model's jobs and, for its team's engineers, the submit form; POST submits."""
    model = visible_model_or_404(request, name)
    can_change = can_change_team(request.user, model.team_id)
    context: dict[str, Any] = {"model": model, "can_change": can_change, "formats": FORMATS,
                               "versions": model.versions.filter(status="ready").order_by("-number")}
    if request.method == "POST":
        if not can_change:
            return render(request, "serving/partials/_job_outcome.html",
                          {**context, "error": "only engineers of the model's team submit jobs"}, status=403)
        upload = request.FILES.get("file")
        try:
            if upload is None:
                raise PaddockError("choose an input file")
            job = services.submit_job(
                actor=Actor.from_request(request), model=model, upload=upload,
                version=_int_or_none(request.POST.get("version"), "version"),
                chunk_size=_int_or_none(request.POST.get("chunk_size"), "chunk_size"),
                output_format=request.POST.get("output_format") or None)
        except PaddockError as exc:
            return render(request, "serving/partials/_job_outcome.html", {**context, "error": exc.message},
                          status=exc.http_status)
        if htmx_partial(request):
            return render(request, "serving/partials/_job_outcome.html", {**context, "job": job}, status=201)
        return redirect("serving:job_detail", name=model.name, job_id=str(job.uid))
    context["jobs"] = BatchJob.objects.select_related("version", "created_by").filter(model=model)[:50]
    return render(request, "serving/jobs.html", context)


def _progress_context(request: HttpRequest, job: BatchJob) -> dict[str, Any]:
    return {"model": job.model, "job": job, "data": JobSerializer(job).data, "live": job.is_live(),
            "can_change": can_change_team(request.user, job.model.team_id)}


@login_required
@vary_on_headers("HX-Request")
def job_detail(request: HttpRequest, name: str, job_id: str) -> HttpResponse:
    """One job; its progress fragment (polled every second while the job is live) for htmx."""
    job = _job_or_404(visible_model_or_404(request, name), job_id)
    context = _progress_context(request, job)
    if htmx_partial(request):
        return render(request, "serving/partials/_job_progress.html", context)
    return render(request, "serving/job_detail.html", context)


@login_required
@require_POST
def job_cancel(request: HttpRequest, name: str, job_id: str) -> HttpResponseBase:
    """Cancel a live job (engineers of the model's team); answers with its progress fragment."""
    model = visible_model_or_404(request, name)
    job = _job_or_404(model, job_id)
    if not can_change_team(request.user, model.team_id):
        return render(request, "serving/partials/_job_outcome.html",
                      {"model": model, "error": "only engineers of the model's team cancel jobs"}, status=403)
    try:
        job = services.cancel_job(actor=Actor.from_request(request), job=job)
    except PaddockError as exc:
        return render(request, "serving/partials/_job_outcome.html", {"model": model, "error": exc.message},
                      status=exc.http_status)
    job.refresh_from_db()
    if htmx_partial(request):
        return render(request, "serving/partials/_job_progress.html", _progress_context(request, job))
    return redirect("serving:job_detail", name=model.name, job_id=str(job.uid))


@login_required
def job_output(request: HttpRequest, name: str, job_id: str) -> FileResponse:
    """The output file, streamed, with its sha256."""
    job = _job_or_404(visible_model_or_404(request, name), job_id)
    try:
        return services.output_response(job)
    except PaddockError as exc:
        raise Http404(exc.message) from None
