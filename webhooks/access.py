"""Who sees and who changes a team's webhooks: its members see them (admins every team's), its
engineers change them. Other teams answer 404, never 403, as unseen models do. A token limited to
models reaches none: a team's webhooks carry events of every model of the team."""

from typing import Any

from django.db.models import QuerySet

from console.access import can_change_team
from console.errors import Forbidden, NotFound
from console.models import ApiToken, Team


def visible_teams(user: Any) -> QuerySet[Team]:
    """The teams whose webhooks the user sees: every team for admins, else the user's own."""
    if user.is_superuser:
        return Team.objects.all()
    return Team.objects.filter(memberships__user=user).distinct()


def get_visible_team(user: Any, name: str, token: ApiToken | None = None) -> Team:
    """The team named `name` if the user sees it, else NotFound; Forbidden for a token limited to models."""
    team = None if "\x00" in name else visible_teams(user).filter(name=name).first()
    if team is None:
        raise NotFound(f"team '{name}' not found")
    if token is not None and token.model_names:
        raise Forbidden("a token limited to models cannot reach a team's webhooks: they carry events of every "
                        "model of the team")
    return team


def require_team_engineer(user: Any, team: Team) -> None:
    """Forbidden unless the user may change the team's webhooks (engineer of the team, or admin)."""
    if not can_change_team(user, team.pk):
        raise Forbidden(f"the engineer role in team '{team.name}' is required to change its webhooks")
