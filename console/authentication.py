"""Authentication: bearer tokens for the API (`Authorization: Bearer pdk_...`), and the console's
sign-in backend, which throttles failed sign-ins and audits every sign-in."""

import hashlib
import logging
import re
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from console.audit import Actor, client_address, record_event
from console.models import TOKEN_PREFIX, ApiToken, hash_token

logger = logging.getLogger(__name__)

# last_used_at is a hint, not a log: write it at most once a minute per token.
_LAST_USED_RESOLUTION = timedelta(seconds=60)
# What ApiToken.generate makes: the prefix and secrets.token_urlsafe(32), 43 characters of the
# URL-safe base64 alphabet. Anything else cannot be a token: refused without a database query.
TOKEN_SHAPE = re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_-]{43}")


def well_formed(raw: str) -> bool:
    """Whether `raw` has the shape of a token Paddock issues (not whether one exists)."""
    return TOKEN_SHAPE.fullmatch(raw) is not None


def resolve_token(raw: str) -> ApiToken:
    """The active token for a raw bearer string, or AuthenticationFailed saying why not."""
    if not well_formed(raw):
        raise exceptions.AuthenticationFailed("invalid token")
    token = ApiToken.objects.select_related("user").filter(digest=hash_token(raw)).first()
    if token is None:
        raise exceptions.AuthenticationFailed("invalid token")
    check_token(token)
    return token


def check_token(token: ApiToken, *, note_use: bool = True) -> None:
    """Refuse a revoked, expired or orphaned token; note its use (at most once a minute) unless
    the caller notes it itself (the data plane, in batches: serving/v2/tokenuse.py)."""
    if token.revoked_at is not None:
        raise exceptions.AuthenticationFailed("token revoked")
    now = timezone.now()
    if token.is_expired(now):
        raise exceptions.AuthenticationFailed("token expired")
    if not token.user.is_active:
        raise exceptions.AuthenticationFailed("token owner is inactive")
    if note_use and (token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION):
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


class ThrottledModelBackend(ModelBackend):
    """Django's username/password check, throttled and audited for sign-ins that come with a
    request (the console's and the admin's login forms):

    1. An account with PADDOCK_LOGIN_FAILURES_PER_USER failed sign-ins, or an address with
       PADDOCK_LOGIN_FAILURES_PER_ADDRESS, within PADDOCK_LOGIN_THROTTLE_SECONDS is refused
       before its password is checked (the form's error: THROTTLED).
    2. Otherwise the password is checked; a failure counts against both and is audited
       (`user.login_failed`), and the one that reaches a limit is audited too (`user.login_throttled`).
    3. A success is audited (`user.login`) and clears the account's count (not the address's).

    Counts live in the `throttle` cache (Redis: every web process sees them). Without it, sign-ins
    go on unthrottled, with a warning: the console must stay reachable to see what is down."""

    THROTTLED = "Too many failed sign-ins for this account or from this address: try again later."

    def authenticate(self, request: HttpRequest | None, username: str | None = None, password: str | None = None,
                     **kwargs: Any) -> Any:
        if request is None:  # a command or a test client's login(): nothing to throttle
            return super().authenticate(request, username=username, password=password, **kwargs)
        name = str(username if username is not None else kwargs.get(get_user_model().USERNAME_FIELD, ""))[:150]
        address = client_address(request)
        keys = _failure_keys(name, address)
        if _failures_reach_limits(keys):
            raise ValidationError(self.THROTTLED, code="throttled")
        user = super().authenticate(request, username=username, password=password, **kwargs)
        actor = Actor(user=user, client_address=address, request_id=getattr(request, "request_id", ""),
                      label="" if user is not None else "anonymous")
        with transaction.atomic():
            if user is not None:
                record_event(actor=actor, action="user.login", obj=user, after={"username": user.get_username()})
                _forget(keys[:1])
                return user
            target = get_user_model()._default_manager.filter(**{get_user_model().USERNAME_FIELD: name}).first()
            record_event(actor=actor, action="user.login_failed", obj=target, object_type="auth.user",
                         after={"username": name})
            counts = _count_failure(keys)
            if counts is not None and _reached(counts):
                record_event(actor=actor, action="user.login_throttled", obj=target, object_type="auth.user",
                             after={"username": name, "address": address, "failures_for_username": counts[0],
                                    "failures_from_address": counts[1]})
        return None


def clear_login_failures(*, username: str = "", address: str = "") -> None:
    """Forget the failed sign-ins counted for an account and/or an address (an admin's unlock)."""
    keys = _failure_keys(username, address)
    _forget([key for key, given in zip(keys, (username, address), strict=True) if given])


def _failure_keys(username: str, address: str) -> list[str]:
    # Hashed: a username may hold anything, a key must not. Case-folded: "Admin" is "admin".
    return [f"login:user:{hashlib.sha256(username.casefold().encode()).hexdigest()}", f"login:addr:{address}"]


def _limits() -> tuple[int, int]:
    return settings.PADDOCK_LOGIN_FAILURES_PER_USER, settings.PADDOCK_LOGIN_FAILURES_PER_ADDRESS


def _reached(counts: tuple[int, int]) -> bool:
    return any(count >= limit for count, limit in zip(counts, _limits(), strict=True))


def _failures_reach_limits(keys: list[str]) -> bool:
    try:
        found = caches["throttle"].get_many(keys)
    except Exception:  # noqa: BLE001 - fail open, loudly: see the class's docstring
        logger.warning("sign-in throttle unavailable; this sign-in is not throttled", exc_info=True)
        return False
    return _reached((int(found.get(keys[0], 0)), int(found.get(keys[1], 0))))


def count_throttled(keys: list[str]) -> list[int]:
    """Add one to each throttle count and return them (a count lives for the throttle's window
    from its first); raises what the throttle's cache raises, for the caller to fail open."""
    cache = caches["throttle"]
    counts = []
    for key in keys:
        cache.add(key, 0, timeout=settings.PADDOCK_LOGIN_THROTTLE_SECONDS)
        counts.append(cache.incr(key))
    return counts


def _count_failure(keys: list[str]) -> tuple[int, int] | None:
    """Add one failure to each count."""
    try:
        counts = count_throttled(keys)
    except Exception:  # noqa: BLE001 - fail open, loudly
        logger.warning("sign-in throttle unavailable; this failure is not counted", exc_info=True)
        return None
    return counts[0], counts[1]


def _forget(keys: list[str]) -> None:
    try:
        caches["throttle"].delete_many(keys)
    except Exception:  # noqa: BLE001 - fail open, loudly
        logger.warning("sign-in throttle unavailable; nothing to forget", exc_info=True)
