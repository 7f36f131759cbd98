"""Console pages for the registry. Each view serves its page and, for htmx, its fragment."""

import re
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Prefetch
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from console.access import can_change_team, require_engineer, visible_model_or_404, visible_models
from console.audit import Actor
from console.errors import InvalidInput, NotFound, PaddockError
from console.htmx import htmx_partial
from console.models import Team
from registry import cards, downloads, services
from registry.api.views import parse_json_field, search_models
from registry.cards import CARD_FIELDS, metrics_as_text, metrics_from_text, render_card
from registry.choices import VersionStatus
from registry.compare import comparison
from registry.downloads import artifact_response
from registry.forms import AliasForm, ModelForm, UploadForm
from registry.models import Alias, ModelVersion, RegisteredModel
from serving.forms import rollout_form_context
from serving.views import panel_context

MODELS_PER_PAGE = 25


@dataclass(frozen=True)
class SortColumn:
    """A column the model list sorts by: its `?sort=` key (`-key`: descending), its header, the
    field it orders by, and whether a first click sorts it descending (the newest, the most)."""

    key: str
    label: str
    field: str
    descending_first: bool = False


SORT_COLUMNS = {column.key: column for column in (
    SortColumn("name", "Name", "name"),
    SortColumn("team", "Team", "team__name"),
    SortColumn("versions", "Versions", "version_count", descending_first=True),
    SortColumn("updated", "Updated", "updated_at", descending_first=True),
)}
DEFAULT_SORT = "name"


def model_ordering(sort: str) -> tuple[str, tuple[str, ...]]:
    """The `?sort=` value in effect (an unknown one is the default, not an error) and its
    order_by; ties go by name."""
    column = SORT_COLUMNS.get(sort.removeprefix("-"))
    if column is None:
        sort, column = DEFAULT_SORT, SORT_COLUMNS[DEFAULT_SORT]
    primary = f"-{column.field}" if sort.startswith("-") else column.field
    return sort, (primary,) if column.field == "name" else (primary, "name")


def sort_headers(sort: str) -> dict[str, dict[str, str]]:
    """Each sortable header: its label, the `?sort=` its link asks for (the other direction when
    the list is sorted by it already) and its aria-sort."""
    headers: dict[str, dict[str, str]] = {}
    for key, column in SORT_COLUMNS.items():
        if sort == key:
            following, aria = f"-{key}", "ascending"
        elif sort == f"-{key}":
            following, aria = key, "descending"
        else:
            following, aria = f"-{key}" if column.descending_first else key, "none"
        headers[key] = {"label": column.label, "sort": following, "aria": aria}
    return headers


@login_required
@vary_on_headers("HX-Request")  # one URL, two answers: caches keep the page and the fragment apart
def model_list(request: HttpRequest) -> HttpResponse:
    """The models the person can see: searched (`q`, `tag`), sorted (`sort`) and a page at a time
    (`page`); the same queries for any number of models."""
    query = request.GET.get("q", "").strip()
    sort, order = model_ordering(request.GET.get("sort", ""))
    models = search_models(visible_models(request.user), query, request.GET.get("tag", "").strip())
    models = models.annotate(version_count=Count("versions", distinct=True)).order_by(*order).prefetch_related(
        Prefetch("versions", queryset=ModelVersion.objects.only("id", "model_id", "number", "status")),
        Prefetch("aliases", queryset=Alias.objects.select_related("version")),
    )
    page = Paginator(models, MODELS_PER_PAGE).get_page(request.GET.get("page"))
    context = {"page": page, "q": query, "sort": sort, "headers": sort_headers(sort)}
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
        **rollout_form_context(versions, serving=context["serving"]),
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


def _version_or_404(model: RegisteredModel, number: int) -> ModelVersion:
    version = model.versions.filter(number=number).select_related("model", "created_by", "parent_version").first()
    if version is None:
        raise Http404(f"model '{model.name}' has no version {number}")
    return version


def _card_context(request: HttpRequest, model: RegisteredModel, version: ModelVersion,
                  **extra: Any) -> dict[str, Any]:
    """What the version page and its card fragment show; `form` is what the edit form holds
    (the card as stored, or what was sent when it was refused)."""
    form = {"card_markdown": version.card_markdown, "metrics": metrics_as_text(version.metrics),
            "source_run_url": version.source_run_url, "dataset_sha256": version.dataset_sha256,
            "parent_version": str(version.parent_version.number) if version.parent_version else ""}
    return {"model": model, "version": version, "card_html": render_card(version.card_markdown),
            "can_change": can_change_team(request.user, model.team_id), "form": form, "error": "", "notice": "",
            "older": list(model.versions.filter(number__lt=version.number).values_list("number", flat=True)),
            **extra}


def _card_answer(request: HttpRequest, context: dict[str, Any], status: int = 200) -> HttpResponse:
    template = "registry/partials/_version_card.html" if htmx_partial(request) else "registry/version_detail.html"
    return render(request, template, context, status=status)


@login_required
def version_detail(request: HttpRequest, name: str, number: int) -> HttpResponse:
    """A version's page: its model card (the team's engineers edit it), artifact, signature and validation."""
    model = visible_model_or_404(request, name)
    return _card_answer(request, _card_context(request, model, _version_or_404(model, number)))


def _parent_number(raw: str) -> int | None:
    if not raw.strip():
        return None
    if not re.fullmatch(r"[0-9]{1,9}", raw.strip()):
        raise InvalidInput("'parent_version' must be a version number of this model")
    return int(raw)



@login_required
@vary_on_headers("HX-Request")
@require_http_methods(["GET", "POST"])
def version_card(request: HttpRequest, name: str, number: int) -> HttpResponseBase:
    """The card (the fragment for htmx, else the version page); POST changes it (engineers of the
    model's team), answering with the card or, refused, with its message and the form as sent."""
    model = visible_model_or_404(request, name)
    version = _version_or_404(model, number)
    if request.method == "GET":
        return _card_answer(request, _card_context(request, model, version))
    form = {field: request.POST.get(field, "") for field in CARD_FIELDS}
    try:
        require_engineer(request.user, model)
        changes = {"card_markdown": form["card_markdown"], "metrics": metrics_from_text(form["metrics"]),
                   "source_run_url": form["source_run_url"], "dataset_sha256": form["dataset_sha256"],
                   "parent_version": _parent_number(form["parent_version"])}
        version = cards.update_version_card(actor=Actor.from_request(request), version=version, changes=changes)
    except PaddockError as exc:
        context = _card_context(request, model, version, form=form, error=exc.message)
        return _card_answer(request, context, exc.http_status)
    if not htmx_partial(request):
        messages.success(request, f"The card of v{version.number} is saved.")
        return redirect("registry:version_detail", name=model.name, number=version.number)
    return _card_answer(request, _card_context(request, model, version, notice="Card saved."))


@login_required
def version_artifact(request: HttpRequest, name: str, number: int) -> HttpResponseBase:
    """Download the version's artifact (its file, or a zip with its external data), audited."""
    model = visible_model_or_404(request, name)
    version = _version_or_404(model, number)
    try:
        download = downloads.download_version(actor=Actor.from_request(request), version=version)
    except NotFound as exc:
        raise Http404(exc.message) from None
    return artifact_response(download)


def _compared(model: RegisteredModel, key: str, raw: str, default: int) -> ModelVersion:
    """The version `?a=` or `?b=` names (`default` when absent): InvalidInput for what is not a
    version number, NotFound for a number the model has no version of."""
    raw = raw.strip()
    if not raw:
        number = default
    elif re.fullmatch(r"[0-9]{1,9}", raw):
        number = int(raw)
    else:
        raise InvalidInput(f"'{key}' must be a version number, e.g. ?a=1&b=2")
    version = model.versions.filter(number=number).select_related("created_by", "parent_version").first()
    if version is None:
        raise NotFound(f"model '{model.name}' has no version {number}")
    return version


@login_required
def version_compare(request: HttpRequest, name: str) -> HttpResponse:
    """Two versions side by side (`?a=&b=`, by default the newest and the one before it)."""
    model = visible_model_or_404(request, name)
    numbers = list(model.versions.values_list("number", flat=True))  # newest first
    context: dict[str, Any] = {"model": model, "numbers": numbers, "error": ""}
    try:
        if not numbers:
            raise NotFound(f"model '{model.name}' has no versions to compare yet")
        a = _compared(model, "a", request.GET.get("a", ""), numbers[min(1, len(numbers) - 1)])
        b = _compared(model, "b", request.GET.get("b", ""), numbers[0])
    except PaddockError as exc:
        context.update(error=exc.message, a_number=request.GET.get("a", ""), b_number=request.GET.get("b", ""))
        return render(request, "registry/compare.html", context, status=exc.http_status)
    context.update(comparison(model, a, b), a_number=str(a.number), b_number=str(b.number))
    return render(request, "registry/compare.html", context)
