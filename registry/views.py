"""Console pages for the registry. Each view serves its page and, for htmx, its fragment."""

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from console.access import can_change_team, visible_model_or_404, visible_models
from console.audit import Actor
from console.errors import NotFound, PaddockError
from console.htmx import htmx_partial
from console.models import Team
from registry import services
from registry.api.views import parse_json_field, search_models
from registry.choices import VersionStatus
from registry.forms import AliasForm, ModelForm, UploadForm
from registry.models import Alias, ModelVersion
from serving.views import panel_context, rollout_form_context


@login_required
@vary_on_headers("HX-Request")  # one URL, two answers: caches keep the page and the fragment apart
def model_list(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()
    models = search_models(visible_models(request.user), query, request.GET.get("tag", "").strip())
    models = models.prefetch_related(
        Prefetch("versions", queryset=ModelVersion.objects.only("id", "model_id", "number", "status")),
        Prefetch("aliases", queryset=Alias.objects.select_related("version")),
    )
    context = {"models": models, "q": query}
    if htmx_partial(request):
        return render(request, "registry/partials/_model_table.html", context)
    return render(request, "registry/model_list.html", context)


def _teams_for(user: Any) -> Any:
    if user.is_superuser:
        return Team.objects.all()
    return Team.objects.filter(memberships__user=user, memberships__role="engineer").distinct()


@login_required
@require_http_methods(["GET", "POST"])
def model_create(request: HttpRequest) -> HttpResponse:
    teams = _teams_for(request.user)
    form = ModelForm(request.POST or None, teams=teams)
    if request.method == "POST" and form.is_valid():
        try:
            model = services.create_model(
                actor=Actor.from_request(request), name=form.cleaned_data["name"],
                team=form.cleaned_data["team"], description=form.cleaned_data["description"],
                tags=form.cleaned_data["tags"],
            )
        except PaddockError as exc:
            form.add_error("name", exc.message)
        else:
            messages.success(request, f"Model '{model.name}' created.")
            return redirect("registry:model_detail", name=model.name)
    return render(request, "registry/model_form.html", {"form": form, "has_teams": teams.exists()})


@login_required
def model_detail(request: HttpRequest, name: str) -> HttpResponse:
    model = visible_model_or_404(request, name)
    versions = list(model.versions.select_related("created_by").prefetch_related("aliases"))
    context = panel_context(request, model)  # the traffic panel's, `model` and `can_change` among them
    context.update(
        versions=versions,
        # Each prefetched alias already points at its version: no query of the model's aliases.
        aliases=sorted((alias for version in versions for alias in version.aliases.all()), key=lambda a: a.name),
        alias_form=AliasForm(),
        **rollout_form_context(versions),
    )
    return render(request, "registry/model_detail.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def version_upload(request: HttpRequest, name: str) -> HttpResponse:
    model = visible_model_or_404(request, name)
    if not can_change_team(request.user, model.team_id):
        return render(request, "registry/forbidden.html", {"model": model}, status=403)
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST":
        result: dict[str, Any] = {"model": model}
        if form.is_valid():
            try:
                version, created = services.register_version(
                    actor=Actor.from_request(request), model=model, upload=form.cleaned_data["artifact"],
                    declared_format=form.cleaned_data["format"],
                    signature=parse_json_field(form.cleaned_data["signature"], "signature"),
                    description=form.cleaned_data["description"],
                    external_data=request.FILES.getlist("external_data"),
                )
                result.update(version=version, created=created)
            except PaddockError as exc:
                result.update(error=exc.message, status=exc.http_status)
        else:
            result["status"] = 400
            result["error"] = "; ".join(f"{field}: {' '.join(map(str, errs))}" for field, errs in form.errors.items())
        status = result.pop("status", 200)
        if htmx_partial(request):
            return render(request, "registry/partials/_upload_result.html", result, status=status)
        if "error" in result:
            messages.error(request, result["error"])
            return render(request, "registry/upload.html", {"model": model, "form": form}, status=400)
        return redirect("registry:model_detail", name=model.name)
    return render(request, "registry/upload.html", {"model": model, "form": form})


@login_required
def version_status(request: HttpRequest, name: str, number: int) -> HttpResponse:
    """The version's status fragment; keeps polling itself until validation has finished."""
    model = visible_model_or_404(request, name)
    version = ModelVersion.objects.filter(model=model, number=number).first()
    if version is None:
        raise Http404(f"model '{name}' has no version {number}")
    done = version.status in (VersionStatus.READY, VersionStatus.FAILED)
    template = "_version_progress.html" if request.GET.get("detail") else "_version_status.html"
    return render(request, f"registry/partials/{template}", {"model": model, "version": version, "done": done})


@login_required
@require_POST
def alias_set(request: HttpRequest, name: str) -> HttpResponseBase:
    model = visible_model_or_404(request, name)
    form = AliasForm(request.POST)
    if not can_change_team(request.user, model.team_id):
        messages.error(request, f"The engineer role in team '{model.team.name}' is required.")
    elif not form.is_valid():
        messages.error(request, "Give an alias name and a version number.")
    else:
        version = model.versions.filter(number=form.cleaned_data["version"]).first()
        try:
            if version is None:
                raise NotFound(f"model '{model.name}' has no version {form.cleaned_data['version']}")
            services.set_alias(actor=Actor.from_request(request), model=model,
                               name=form.cleaned_data["alias"], version=version)
            messages.success(request, f"{form.cleaned_data['alias']} → version {version.number}")
        except PaddockError as exc:
            messages.error(request, exc.message)
    return redirect("registry:model_detail", name=model.name)
