"""Template context every console page gets: the count of rollouts awaiting approval for the
navigation's badge (admins only)."""

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest

from serving.models import Rollout, RolloutState


def approvals(request: HttpRequest) -> dict[str, Callable[[], int]]:
    """`approvals_waiting`: a callable the template calls only where it shows the badge (base.html,
    for admins), so that a fragment, or a page for someone who is not an admin, runs no query
    for it; where it is shown, one COUNT."""
    def waiting() -> int:
        user: Any = getattr(request, "user", None)
        if user is None or not user.is_superuser:
            return 0
        return Rollout.objects.filter(state=RolloutState.AWAITING_APPROVAL).count()

    return {"approvals_waiting": waiting}
