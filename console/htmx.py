"""htmx helpers for the views that serve a page and its fragment from one URL.

A refused htmx request is answered in the refusal's status (console/errors.py) with the view's
fragment, its message in a role="alert" element (or with the message alone); for a request sent
from a form or a group of action buttons, static/js/forms.js shows that message in the form's
error slot instead of swapping the fragment in."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.http import Http404, HttpRequest, HttpResponseBase
from django.shortcuts import redirect
from django_htmx.middleware import HtmxDetails

from console.audit import Actor
from console.errors import NotFound, PaddockError

T = TypeVar("T")


def htmx_partial(request: HttpRequest) -> bool:
    """Whether to answer with the fragment rather than the whole page: an htmx request, but not a
    boosted link (it swaps the whole body) nor a history restore (htmx 2 sends HX-Request with it
    and puts the answer in place of the body)."""
    htmx: HtmxDetails | None = getattr(request, "htmx", None)  # None without HtmxMiddleware (RequestFactory)
    return htmx is not None and bool(htmx) and not htmx.boosted and not htmx.history_restore_request


@dataclass(frozen=True, slots=True)
class CardAction(Generic[T]):
    """One of a card's buttons: the service it calls (with the request's actor and the object)
    and the word its notice ends with ("paused")."""

    call: Callable[[Actor, T], Any]
    done: str


def card_action(request: HttpRequest, action: str, *, actions: Mapping[str, CardAction[T]], what: str,
                check: Callable[[], None], find: Callable[[], T | None], missing: str, label: str,
                card: Callable[[dict[str, str], int], HttpResponseBase], back: str) -> HttpResponseBase:
    """A button on a card (pause, resume, delete...) that changes one object and answers with the card:
    1. an action not in `actions` answers 404 ("no action 'x' for <what>");
    2. `check` refuses a person who may not change it, `find` looks the object up (None: 404 `missing`);
    3. the action's service runs; any refusal answers the card with its message, in its status;
    4. without htmx, back to the page at `back`; with it, the card with "<label> <done>."."""
    if action not in actions:
        raise Http404(f"no action '{action}' for {what}")
    try:
        check()
        found = find()
        if found is None:
            raise NotFound(missing)
        actions[action].call(Actor.from_request(request), found)
    except PaddockError as exc:
        return card({"error": exc.message}, exc.http_status)
    if not htmx_partial(request):
        return redirect(back)
    return card({"notice": f"{label} {actions[action].done}."}, 200)
