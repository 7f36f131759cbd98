"""Bearer-token checks for the data plane, cached for a moment in each web process so the hot
path does not touch the database per request. A revoked token stops working within about
TOKEN_CACHE_SECONDS; an expired one at once (its expiry is cached with it)."""

from dataclasses import dataclass
from datetime import datetime

from asgiref.sync import sync_to_async
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed

from console.authentication import check_token
from console.errors import Forbidden, NotFound, Unauthenticated
from console.models import ApiToken, Membership, hash_token
from serving.v2.cache import RefreshingCache
from serving.v2.routes import ModelRoute

TOKEN_CACHE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as the data plane needs it: the token's scopes, model list and the user's teams."""

    token_id: int
    username: str
    superuser: bool
    scopes: frozenset[str]
    model_names: frozenset[str]
    team_ids: frozenset[int]
    expires_at: datetime | None

    def has_scope(self, scope: str) -> bool:
        """Scopes imply narrower ones: `admin` everything, `manage` also `read`."""
        return scope in self.scopes or "admin" in self.scopes or (scope == "read" and "manage" in self.scopes)

    def may_see(self, route: ModelRoute) -> bool:
        """A token's model list narrows what its user's teams (or superuser) can see."""
        if self.model_names and route.name not in self.model_names:
            return False
        return self.superuser or route.team_id in self.team_ids


def _load(digest: str) -> Principal | str:
    """The principal behind a token digest, or the reason it is refused (the management API's
    rules and messages: console.authentication.check_token)."""
    token = ApiToken.objects.filter(digest=digest).select_related("user").first()
    if token is None:
        return "invalid token"
    try:
        check_token(token)
    except AuthenticationFailed as exc:
        return str(exc.detail)
    teams = frozenset(Membership.objects.filter(user_id=token.user_id).values_list("team_id", flat=True))
    return Principal(token.pk, token.user.username, token.user.is_superuser, frozenset(token.scopes),
                     frozenset(token.model_names), teams, token.expires_at)


class TokenCache:
    """Token digests → principals (or refusal reasons), each kept TOKEN_CACHE_SECONDS."""

    def __init__(self) -> None:
        self._cache: RefreshingCache[str, Principal | str] = RefreshingCache(
            sync_to_async(_load, thread_sensitive=True), TOKEN_CACHE_SECONDS)

    async def authenticate(self, header: str | None) -> Principal:
        """The principal behind an `Authorization` header, or Unauthenticated with the reason."""
        if not header:
            raise Unauthenticated("authentication required: send 'Authorization: Bearer <token>'")
        keyword, _, raw = header.partition(" ")
        if keyword.lower() != "bearer" or not raw.strip():
            raise Unauthenticated("malformed Authorization header: expected 'Bearer <token>'")
        result = await self._cache.get(hash_token(raw.strip()))
        if isinstance(result, str):
            raise Unauthenticated(result)
        if result.expires_at is not None and result.expires_at <= timezone.now():
            raise Unauthenticated("token expired")
        return result


def authorize(principal: Principal, route: ModelRoute | None, name: str, scope: str) -> ModelRoute:
    """The model's route if the principal may see it (else 404: names must not leak) with `scope`."""
    if route is None or not principal.may_see(route):
        raise NotFound(f"model '{name}' not found")
    if not principal.has_scope(scope):
        raise Forbidden(f"token lacks the '{scope}' scope")
    return route
