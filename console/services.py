"""Writes on the people's side: tokens, teams, memberships. Each in one audited transaction."""

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from console.audit import Actor, record_event
from console.errors import Forbidden, InvalidInput
from console.models import ApiToken, valid_scopes


def create_token(*, actor: Actor, user: Any, name: str, scopes: list[str], model_names: list[str] | None = None,
                 expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """A new token for `user`; returns it and its raw value, which is never shown again."""
    try:
        scopes = valid_scopes(scopes)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    if not scopes:
        raise InvalidInput("a token needs at least one scope")
    if "admin" in scopes and not user.is_superuser:
        raise Forbidden("only admins can hold tokens with the 'admin' scope")
    if actor.token is not None and not all(actor.token.has_scope(scope) for scope in scopes):
        # A token must not mint a stronger token than itself.
        raise Forbidden("a token can only create tokens with scopes it holds itself")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("expires_at is in the past")
    raw, prefix, digest = ApiToken.generate()
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user, name=name, prefix=prefix, digest=digest, scopes=scopes,
            model_names=sorted(set(model_names or [])), expires_at=expires_at,
        )
        record_event(actor=actor, action="token.create", obj=token, after=token.snapshot())
    return token, raw


def revoke_token(*, actor: Actor, token: ApiToken) -> ApiToken:
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().select_related("user").get(pk=token.pk)
        if token.revoked_at is not None:
            return token
        before = token.snapshot()
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        record_event(actor=actor, action="token.revoke", obj=token, before=before, after=token.snapshot())
    return token
