"""The approval inbox, for admins: every rollout waiting for an admin across every team, with its
last gate figures, and approve or reject (which rolls back) with a reason. One view serves the
page and its list for htmx; a decision answers with the list, and the navigation's count out of
band. Thin: serving.approvals decides."""

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST, require_safe
from django.views.decorators.vary import vary_on_headers

from console.admin_pages import admin_only
from console.audit import Actor
from console.errors import PaddockError
from console.htmx import htmx_partial
from serving.approvals import awaiting_approval, decide_rollout
from serving.models import Rollout

ADMINS_ONLY = "only an admin can see and decide the rollouts awaiting approval"
LIST = "console/partials/_approvals.html"


def _answer(request: HttpRequest, status: int = 200, **extra: Any) -> HttpResponse:
    rollouts = list(awaiting_approval())
    context = {"rollouts": rollouts, "notice": "", "error": "", **extra}
    if htmx_partial(request):
        return render(request, LIST, {**context, "count_out_of_band": True}, status=status)
    return render(request, "console/approvals.html", context, status=status)


@admin_only(ADMINS_ONLY)
@require_safe
@vary_on_headers("HX-Request")  # one URL, two answers: caches keep the page and the list apart
def approval_list(request: HttpRequest) -> HttpResponse:
    """Every rollout awaiting approval, the longest waiting first."""
    return _answer(request)


@admin_only(ADMINS_ONLY)
@require_POST
def approval_decide(request: HttpRequest, rollout_id: int) -> HttpResponse:
    """Approve or reject one rollout (`decision`), with a `reason`; a refusal is answered in its
    status with its message, shown in that rollout's form."""
    rollout = Rollout.objects.select_related("model", "candidate_version").filter(pk=rollout_id).first()
    if rollout is None:
        raise Http404(f"no rollout {rollout_id}")
    decision = request.POST.get("decision", "")
    try:
        decide_rollout(actor=Actor.from_request(request), rollout=rollout, decision=decision,
                       reason=request.POST.get("reason", ""))
    except PaddockError as exc:
        return _answer(request, exc.http_status, error=exc.message)
    done = "approved" if decision == "approve" else "rejected: rolled back"
    notice = f"Rollout {rollout.pk} of {rollout.model.name} (v{rollout.candidate_version.number}) {done}."
    return _answer(request, notice=notice)
