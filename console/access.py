"""Who sees and who changes which model. Outsiders get 404, never 403, so names do not leak."""

from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet

from console.choices import Role
from console.errors import Forbidden, NotFound
from console.models import ApiToken, Membership

if TYPE_CHECKING:
    from registry.models import RegisteredModel


def request_token(request: Any) -> ApiToken | None:
    """The API token a DRF request was authenticated with, if any (None for sessions)."""
    return request.auth if isinstance(request.auth, ApiToken) else None


def visible_models(user: Any, token: ApiToken | None = None) -> "QuerySet[RegisteredModel]":
    """Models of the user's teams (every model for admins), narrowed to the token's models if it lists any."""
    from registry.models import RegisteredModel

    models = RegisteredModel.objects.select_related("team", "owner")
    if not user.is_superuser:
        models = models.filter(team__memberships__user=user).distinct()
    if token is not None and token.model_names:
        models = models.filter(name__in=token.model_names)
    return models


def get_visible_model(user: Any, name: str, token: ApiToken | None = None) -> "RegisteredModel":
    """The model named `name` if the user (and token) may see it, else NotFound."""
    # NUL: no model has it in its name, and PostgreSQL refuses it in a query (it was a 500).
    model = None if "\x00" in name else visible_models(user, token).filter(name=name).first()
    if model is None:
        raise NotFound(f"model '{name}' not found")
    return model


def visible_model_or_404(request: Any, name: str) -> "RegisteredModel":
    """A console page's model: get_visible_model for the signed-in person, or Django's 404."""
    from django.http import Http404

    try:
        return get_visible_model(request.user, name)
    except NotFound as exc:
        raise Http404(exc.message) from None


def can_change_team(user: Any, team_id: int) -> bool:
    """Admins change every team's models; otherwise only the team's engineers do."""
    if user.is_superuser:
        return True
    return Membership.objects.filter(user=user, team_id=team_id, role=Role.ENGINEER).exists()


def require_engineer(user: Any, model: "RegisteredModel") -> None:
    """Forbidden unless the user may change the model (engineer of its team, or admin)."""
    if not can_change_team(user, model.team_id):
        raise Forbidden(f"the engineer role in team '{model.team.name}' is required to change this model")
