"""Bearer-token checks for the data plane, cached for a moment in each web process so the hot
path does not touch the database per request. A revoked token, an owner made inactive or taken
off the model's team stops working within TOKEN_CACHE_SECONDS (an entry is fresh for half of it
and served for the other half while one task reloads it); an expired one at once (its expiry is
cached with it). Open websocket streams ask again on every message (`recheck`: a dict lookup).
While the database is unreachable the cached principals and refusals are served on, for at most
PADDOCK_DB_OUTAGE_GRACE_SECONDS (expiry still checked), and each use is noted in memory for
`last_used_at`, written in batches off the request path (serving/v2/tokenuse.py).

Unknown bearer strings are cheap to refuse: one not shaped like a Paddock token is refused
without a query, a refusal is cached like a principal (in a bounded LRU), and an address with
PADDOCK_AUTH_FAILURE_LIMIT failed authentications in one FAILURE_WINDOW_SECONDS window gets 429
until the window ends (IPv6 counted per /64), unless its token is one the cache already holds."""

import ipaddress
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed

from console.authentication import check_token, well_formed
from console.errors import Forbidden, NotFound, TooManyRequests, Unauthenticated
from console.models import ApiToken, Membership, hash_token
from serving.v2.cache import RefreshingCache
from serving.v2.outage import DATABASE_DOWN, closing_on_outage
from serving.v2.routes import ModelRoute
from serving.v2.tokenuse import TokenUses

TOKEN_CACHE_SECONDS = 1.0
# The too_many_requests row's Retry-After (console/errors.py) is this window: the longest wait.
FAILURE_WINDOW_SECONDS = 10.0
INVALID = "invalid token"


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

    @property
    def tenant(self) -> str:
        """The key of this token's byte budget (serving/v2/budget.py), the same over REST and websockets."""
        return f"token-{self.token_id}"

    def has_scope(self, scope: str) -> bool:
        """Scopes imply narrower ones: `admin` everything, `manage` also `read`."""
        return scope in self.scopes or "admin" in self.scopes or (scope == "read" and "manage" in self.scopes)

    def may_see(self, route: ModelRoute) -> bool:
        """A token's model list narrows what its user's teams (or superuser) can see."""
        if self.model_names and route.name not in self.model_names:
            return False
        return self.superuser or route.team_id in self.team_ids


@closing_on_outage
def _load(digest: str) -> Principal | str:
    """The principal behind a token digest, or the reason it is refused (the management API's
    rules and messages: console.authentication.check_token, which refuses an inactive owner).
    Reads only: its use is noted by TokenUses."""
    token = ApiToken.objects.filter(digest=digest).select_related("user").first()
    if token is None:
        return INVALID
    try:
        check_token(token, note_use=False)
    except AuthenticationFailed as exc:
        return str(exc.detail)
    teams = frozenset(Membership.objects.filter(user_id=token.user_id).values_list("team_id", flat=True))
    return Principal(token.pk, token.user.username, token.user.is_superuser, frozenset(token.scopes),
                     frozenset(token.model_names), teams, token.expires_at)


def client_of(scope: dict[str, Any]) -> str | None:
    """The address a connection's failed authentications count against (uvicorn's `client`,
    which --proxy-headers takes from the proxy), or None when the server does not know it."""
    client = scope.get("client")
    return str(client[0]) if client else None


class FailureLimiter:
    """Failed authentications per address in fixed windows; at most `max_addresses` tracked (LRU)."""

    def __init__(self, limit: int, window: float = FAILURE_WINDOW_SECONDS, max_addresses: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self.windows: OrderedDict[str, list[float]] = OrderedDict()  # address → [window's end, failures]

    def blocked(self, address: str | None) -> bool:
        """Whether the address has used up its failures in its current window."""
        if address is None:
            return False
        entry = self.windows.get(_counted_as(address))
        return entry is not None and entry[1] >= self.limit and time.monotonic() < entry[0]

    def failed(self, address: str | None) -> None:
        """Count one failure against the address (a new window when its last one has ended)."""
        if address is None:
            return
        key, now = _counted_as(address), time.monotonic()
        entry = self.windows.get(key)
        if entry is None or now >= entry[0]:
            self.windows[key] = [now + self.window, 1]
        else:
            entry[1] += 1
        self.windows.move_to_end(key)
        while len(self.windows) > self.max_addresses:
            self.windows.popitem(last=False)


def _counted_as(address: str) -> str:
    """IPv6 addresses by their /64 (a host commonly holds a whole one); others as they are."""
    if ":" not in address:
        return address
    try:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    except ValueError:
        return address


class TokenCache:
    """Token digests → principals (or refusal reasons), none served older than TOKEN_CACHE_SECONDS."""

    def __init__(self, failure_limit: int | None = None) -> None:
        self._cache: RefreshingCache[str, Principal | str] = RefreshingCache(
            sync_to_async(_load, thread_sensitive=True), TOKEN_CACHE_SECONDS / 2, stale=TOKEN_CACHE_SECONDS / 2,
            unreachable=DATABASE_DOWN, grace=settings.PADDOCK_DB_OUTAGE_GRACE_SECONDS, what="tokens")
        self.uses = TokenUses(settings.PADDOCK_TOKEN_USE_FLUSH_SECONDS)
        limit = settings.PADDOCK_AUTH_FAILURE_LIMIT if failure_limit is None else failure_limit
        self.failures = FailureLimiter(limit)

    @staticmethod
    def bearer(header: str | None) -> str:
        """The raw token of an `Authorization` value, or Unauthenticated saying what to send."""
        if not header:
            raise Unauthenticated("authentication required: send 'Authorization: Bearer <token>'")
        keyword, _, raw = header.partition(" ")
        if keyword.lower() != "bearer" or not raw.strip():
            raise Unauthenticated("malformed Authorization header: expected 'Bearer <token>'")
        return raw.strip()

    async def authenticate(self, header: str | None, client: str | None = None) -> Principal:
        """The principal behind an `Authorization` header, or Unauthenticated with the reason
        (TooManyRequests for an address past its failures: `client`, see `check`)."""
        _, principal = await self.check(self.bearer(header), client)
        return principal

    async def check(self, raw: str, client: str | None = None) -> tuple[str, Principal]:
        """The digest and principal of a raw token. Each refusal counts against `client`'s
        address; past the limit, anything but a token the cache holds gets TooManyRequests."""
        digest = hash_token(raw) if well_formed(raw) else None
        known = self._cache.peek(digest) if digest is not None else None
        if not isinstance(known, Principal) and self.failures.blocked(client):
            raise TooManyRequests(f"too many failed authentications from this address ({self.failures.limit} in "
                                  f"{self.failures.window:g} s); retry later")
        try:
            if digest is None:
                raise Unauthenticated(INVALID)
            return digest, await self.recheck(digest)
        except Unauthenticated:
            self.failures.failed(client)
            raise

    async def recheck(self, digest: str) -> Principal:
        """The principal behind a digest now (fresh from memory: a dict lookup), or Unauthenticated."""
        result = await self._cache.get(digest)
        if isinstance(result, str):
            raise Unauthenticated(result)
        if result.expires_at is not None and result.expires_at <= timezone.now():
            raise Unauthenticated("token expired")
        self.uses.note(result.token_id)
        return result


def authorize(principal: Principal, route: ModelRoute | None, name: str, scope: str) -> ModelRoute:
    """The model's route if the principal may see it (else 404: names must not leak) with `scope`."""
    if route is None or not principal.may_see(route):
        raise NotFound(f"model '{name}' not found")
    if not principal.has_scope(scope):
        raise Forbidden(f"token lacks the '{scope}' scope")
    return route


@closing_on_outage
def visible_model_names(principal: Principal) -> set[str]:
    """The models a principal may see, by name: its user's teams' (every one for a superuser),
    narrowed by the token's model list. For pages that list models, such as /metrics."""
    from registry.models import RegisteredModel

    return {name for name, team_id in RegisteredModel.objects.values_list("name", "team_id")
            if (principal.superuser or team_id in principal.team_ids)
            and (not principal.model_names or name in principal.model_names)}
