"""The audit log's console pages, for admins: the filtered list (the page, or its table for
htmx) with each event's changes field by field, its CSV and JSON exports, and the chain's state
with "Verify now". Thin: console.audit_filters reads the filters (the API uses the same),
console.audit_diff compares, console.audit_chain checks, console.audit_export streams."""

from typing import Any

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST, require_safe
from django.views.decorators.vary import vary_on_headers

from console.admin_pages import admin_only, refuse
from console.audit import Actor
from console.audit_chain import events_since, last_verification, verify_chain_now
from console.audit_diff import field_changes
from console.audit_export import export_response, record_export
from console.audit_filters import AuditFilters, filter_events
from console.errors import InvalidInput
from console.htmx import htmx_partial
from console.models import AuditEvent, Team

ADMINS_ONLY = "only an admin can read the audit log"
PAGE_SIZE = 50
TABLE = "console/partials/_audit_table.html"
CHAIN = "console/partials/_audit_chain.html"


def chain_context() -> dict[str, Any]:
    """The chain panel: the last check and how many events came after it."""
    chain = last_verification()
    return {"chain": chain, "since": events_since(chain) if chain else 0}


def _as_sent(request: HttpRequest) -> AuditFilters:
    """The filters as sent, for the form to show again beside their refusal ('' for NUL ones)."""
    try:
        return AuditFilters.of(request.GET)
    except InvalidInput:
        return AuditFilters()


@admin_only(ADMINS_ONLY)
@require_safe
@vary_on_headers("HX-Request")  # one URL, two answers: caches keep the page and the fragment apart
def audit_list(request: HttpRequest) -> HttpResponse:
    """The events matching the filters, newest first, 50 a page; a filter it cannot read is
    refused (400) with its message, in the filter form's error slot."""
    error, status = "", 200
    try:
        events, filters = filter_events(request.GET)
    except InvalidInput as exc:
        events, filters, error, status = AuditEvent.objects.none(), _as_sent(request), exc.message, exc.http_status
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [(event, field_changes(event.before, event.after)) for event in page]
    context = {"page": page, "rows": rows, "filters": filters, "error": error}
    if htmx_partial(request):
        return render(request, TABLE, context, status=status)
    context.update(chain_context(), teams=Team.objects.values_list("name", flat=True))
    return render(request, "console/audit.html", context, status=status)


@admin_only(ADMINS_ONLY)
@require_safe
def audit_export(request: HttpRequest, fmt: str) -> HttpResponseBase:
    """The filtered events as a streamed CSV or JSON attachment (console.audit_export)."""
    if fmt not in ("csv", "json"):
        raise Http404(f"no export as '{fmt}': csv or json")
    try:
        events, filters = filter_events(request.GET)
    except InvalidInput as exc:
        return refuse(request, exc.message, exc.http_status)
    record_export(actor=Actor.from_request(request), fmt=fmt, filters=filters)
    return export_response(request, events, fmt)


@admin_only(ADMINS_ONLY)
@require_POST
def audit_verify(request: HttpRequest) -> HttpResponseBase:
    """Check the whole chain now (audited `audit.verified`); answer with the chain panel."""
    verify_chain_now(actor=Actor.from_request(request))
    if not htmx_partial(request):
        return redirect("console:audit_list")
    return render(request, CHAIN, chain_context())
