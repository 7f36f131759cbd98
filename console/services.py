"""Writes on the people's side: tokens, teams, memberships, users. Each in one audited transaction."""

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import SET_NULL, ForeignObjectRel, Model
from django.utils import timezone

from console.audit import Actor, record_event
from console.errors import Conflict, Forbidden, InvalidInput, NotFound
from console.models import ApiToken, Membership, Team, valid_scopes


def create_token(*, actor: Actor, user: Any, name: str, scopes: list[str], model_names: list[str] | None = None,
                 expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """A new token for `user`; returns it and its raw value, which is never shown again."""
    try:
        scopes = valid_scopes(scopes)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    if not scopes:
        raise InvalidInput("a token needs at least one scope")
    for everyone_scope in ("admin", "metrics"):  # they reach every team's models
        if everyone_scope in scopes and not user.is_superuser:
            raise Forbidden(f"only admins can hold tokens with the '{everyone_scope}' scope")
    model_names = sorted(set(model_names or []))
    if actor.token is not None:  # minted over the API with a token: never stronger than that token
        check_token_within(actor.token, scopes=scopes, model_names=model_names, expires_at=expires_at)
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("expires_at is in the past")
    raw, prefix, digest = ApiToken.generate()
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user, name=name, prefix=prefix, digest=digest, scopes=scopes,
            model_names=model_names, expires_at=expires_at,
        )
        record_event(actor=actor, action="token.create", obj=token, after=token.snapshot())
    return token, raw


def check_token_within(minting: ApiToken, *, scopes: list[str], model_names: list[str],
                       expires_at: datetime | None) -> None:
    """Forbidden unless a token with these grants is no stronger than `minting`, the token that
    asks for it: every scope granted by it (`has_scope`: admin implies all, manage implies read),
    its models within its model limits, and an expiry no later than its own."""
    for scope in scopes:
        if not minting.has_scope(scope):
            raise Forbidden(f"a token cannot grant the '{scope}' scope it does not have")
    if minting.model_names:
        if not model_names:
            raise Forbidden("a token limited to models cannot create a token for every model")
        for name in model_names:
            if not minting.allows_model(name):
                raise Forbidden(f"a token cannot grant model '{name}' it is not limited to")
    if minting.expires_at is not None:
        if expires_at is None:
            raise Forbidden("a token that expires cannot create a token that never expires")
        if expires_at > minting.expires_at:
            raise Forbidden(f"a token cannot create a token that outlives it: expires_at must be at or before "
                            f"{minting.expires_at.isoformat()}")


def may_see_token(actor: Actor, token: ApiToken) -> bool:
    """Whether `actor` may see (and revoke) `token`: their own; anyone's for an admin in a browser
    session or with an `admin`-scoped token; anything for the system."""
    user = actor.person
    if user is None:
        return actor.user is None  # Paddock itself (commands, tasks); never an anonymous caller
    if token.user_id == user.pk:
        return True
    return user.is_superuser and (actor.token is None or actor.token.has_scope("admin"))


def revoke_token(*, actor: Actor, token: ApiToken) -> ApiToken:
    """Revoke `token` (already revoked: no change, no event). Someone else's token needs an admin
    (a token of theirs with the `admin` scope); to anyone else it does not exist (NotFound)."""
    if not may_see_token(actor, token):
        raise NotFound(f"token {token.pk} not found")
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().select_related("user").get(pk=token.pk)
        if token.revoked_at is not None:
            return token
        before = token.snapshot()
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        record_event(actor=actor, action="token.revoke", obj=token, before=before, after=token.snapshot())
    return token


TEAM_NAME = re.compile(r"[-a-zA-Z0-9_]{1,64}")  # Team.name: a slug of at most 64 characters


def reserved_team_names() -> set[str]:
    """Names a team may not take: a team's stream keys on Paddock's Redis start with `<team>:`
    (serving.streams.services), and these prefixes are Paddock's own keys (its data plane's and
    Channels' layer)."""
    return {settings.PADDOCK_REDIS_PREFIX, "asgi"}


def create_team(*, actor: Actor, name: str, description: str = "") -> Team:
    """A new team, audited; a name Paddock's own Redis keys start with, or one taken, is refused."""
    if not TEAM_NAME.fullmatch(name):
        raise InvalidInput(f"a team name is 1 to 64 letters, digits, '-' or '_' (e.g. 'vision'): '{name}' is not")
    if len(description) > 200 or "\x00" in description:
        raise InvalidInput("a team's description is at most 200 characters, and no NUL characters")
    if name in reserved_team_names():
        raise InvalidInput(f"'{name}' is reserved: Paddock's own Redis keys start with '{name}:', and a team's "
                           "stream keys start with its name; choose another team name")
    if Team.objects.filter(name=name).exists():
        raise Conflict(f"a team named '{name}' already exists")
    try:
        with transaction.atomic():
            team = Team.objects.create(name=name, description=description)
            record_event(actor=actor, action="team.create", obj=team, after=_team_snapshot(team))
    except IntegrityError:  # created meanwhile
        raise Conflict(f"a team named '{name}' already exists") from None
    return team


def ensure_team(*, actor: Actor, name: str, description: str = "") -> Team:
    """The team named `name`, created (and audited) only when there is none."""
    with transaction.atomic():
        team = Team.objects.select_for_update().filter(name=name).first()
        return team if team is not None else create_team(actor=actor, name=name, description=description)


def delete_team(*, actor: Actor, team: Team) -> None:
    """Remove a team and its memberships, one event per row. A team that still owns models is
    refused (ProtectedError: models are PROTECTed) and the transaction leaves nothing behind."""
    with transaction.atomic():
        team = Team.objects.select_for_update().get(pk=team.pk)
        for membership in team.memberships.select_related("user"):
            record_event(actor=actor, action="membership.delete", obj=membership,
                         before=_membership_snapshot(membership))
        record_event(actor=actor, action="team.delete", obj=team, before=_team_snapshot(team))
        team.delete()


def create_superuser(*, actor: Actor, username: str, password: str | None) -> Any:
    """A new superuser (password None: unusable until set); its password never reaches the audit log."""
    with transaction.atomic():
        user = get_user_model().objects.create_superuser(username=username, email="", password=password)
        record_event(actor=actor, action="user.create", obj=user, after={"username": username, "is_superuser": True})
    return user


def audit_password_change(*, actor: Actor, user: Any) -> None:
    """Record that `user`'s password was set or disabled, inside the transaction that saved it;
    the event says which, never the password or its hash."""
    record_event(actor=actor, action="user.password_change", obj=user,
                 after={"username": user.get_username(), "usable_password": user.has_usable_password()})


def delete_user(*, actor: Actor, user: Any) -> None:
    """Remove a person, one event per row removed or changed with them, in one transaction:
    their tokens and memberships (deleted with them), each row that named them in a field
    cleared on delete (a model's owner, a deployment's updated_by...), then the user."""
    with transaction.atomic():
        user = get_user_model().objects.select_for_update().get(pk=user.pk)
        username = user.get_username()
        for token in user.api_tokens.select_related("user"):
            record_event(actor=actor, action="token.delete", obj=token, before=token.snapshot())
        for membership in user.memberships.select_related("team", "user"):
            record_event(actor=actor, action="membership.delete", obj=membership,
                         before=_membership_snapshot(membership))
        for row, field in _rows_naming(user):
            record_event(actor=actor, action=f"{row._meta.model_name}.update", obj=row, before={field: username},
                         after={field: None})
        record_event(actor=actor, action="user.delete", obj=user,
                     before={"username": username, "is_staff": user.is_staff, "is_superuser": user.is_superuser})
        user.delete()


def _rows_naming(user: Any) -> Iterator[tuple[Model, str]]:
    """Rows whose foreign key to `user` is set to NULL when the user is deleted."""
    for relation in type(user)._meta.get_fields(include_hidden=True):
        if isinstance(relation, ForeignObjectRel) and relation.on_delete is SET_NULL:
            name = relation.field.name
            yield from ((row, name) for row in relation.field.model._base_manager.filter(**{name: user}))


def _team_snapshot(team: Team) -> dict[str, Any]:
    return {"name": team.name, "description": team.description}


def _membership_snapshot(membership: Membership) -> dict[str, Any]:
    return {"team": membership.team.name, "user": membership.user.get_username(), "role": membership.role}
