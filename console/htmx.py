"""htmx helpers for the views that serve a page and its fragment from one URL.

A refused htmx request is answered in the refusal's status (console/errors.py) with the view's
fragment, its message in a role="alert" element (or with the message alone); for a request sent
from a form or a group of action buttons, static/js/forms.js shows that message in the form's
error slot instead of swapping the fragment in."""

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


def htmx_partial(request: HttpRequest) -> bool:
    """Whether to answer with the fragment rather than the whole page: an htmx request, but not a
    boosted link (it swaps the whole body) nor a history restore (htmx 2 sends HX-Request with it
    and puts the answer in place of the body)."""
    htmx: HtmxDetails | None = getattr(request, "htmx", None)  # None without HtmxMiddleware (RequestFactory)
    return htmx is not None and bool(htmx) and not htmx.boosted and not htmx.history_restore_request
