"""Bearer-token authentication for the API: `Authorization: Bearer pdk_...`."""

from datetime import timedelta
from typing import Any

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from console.models import ApiToken, hash_token

# last_used_at is a hint, not a log: write it at most once a minute per token.
_LAST_USED_RESOLUTION = timedelta(seconds=60)


def resolve_token(raw: str) -> ApiToken:
    """The active token for a raw bearer string, or AuthenticationFailed saying why not."""
    token = ApiToken.objects.select_related("user").filter(digest=hash_token(raw)).first()
    if token is None:
        raise exceptions.AuthenticationFailed("invalid token")
    check_token(token)
    return token


def check_token(token: ApiToken) -> None:
    """Refuse a revoked, expired or orphaned token; note its use (at most once a minute)."""
    if token.revoked_at is not None:
        raise exceptions.AuthenticationFailed("token revoked")
    now = timezone.now()
    if token.is_expired(now):
        raise exceptions.AuthenticationFailed("token expired")
    if not token.user.is_active:
        raise exceptions.AuthenticationFailed("token owner is inactive")
    if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <token>` authenticates as the token's owner, with the token as `request.auth`."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        """(user, token) for a valid bearer token; None without the header, so sessions are tried next."""
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        keyword, _, raw = header.partition(" ")
        if keyword.lower() != self.keyword.lower() or not raw.strip():
            raise exceptions.AuthenticationFailed("malformed Authorization header: expected 'Bearer <token>'")
        token = resolve_token(raw.strip())
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        """The WWW-Authenticate value of a 401; without it DRF would answer 403."""
        return 'Bearer realm="paddock"'
