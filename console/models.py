"""People's side: teams and roles, API tokens, and the append-only audit log."""

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models
from django.db.models import CharField, ManyToManyField, SlugField
from django.utils import timezone

from console.choices import ALL_SCOPES, Role

if TYPE_CHECKING:
    from django.contrib.auth.models import User

TOKEN_PREFIX = "pdk_"


class Team(models.Model):
    """Owns models; people see and change what their teams own."""

    # Spelled without `models.`: mypy resolves that name in this class body to `Team.models`,
    # the reverse accessor of RegisteredModel.team, rather than to the django.db.models module.
    name = SlugField(max_length=64, unique=True)
    description = CharField(max_length=200, blank=True)
    # The plugin cannot resolve the bare lazy reference "Membership", so the types are spelled out.
    members: "ManyToManyField[User, Membership]" = ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="teams"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role (viewer or engineer) in one team."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="one_membership_per_team")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} as {self.role}"


def hash_token(raw: str) -> str:
    """The hex SHA-256 digest stored for a raw token; tokens are looked up by it."""
    # The secret is 256 random bits: a plain SHA-256 is enough, no slow KDF needed.
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token: shown once, stored as its hash, scoped, optionally limited to models."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="First characters, to recognise a token.")
    digest = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    model_names = models.JSONField(default=list, blank=True, help_text="Empty: every model the user sees.")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def generate() -> tuple[str, str, str]:
        """A new raw token, its display prefix and its digest."""
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        return raw, raw[:12], hash_token(raw)

    def is_expired(self, now: datetime | None = None) -> bool:
        """Whether its expiry, if it has one, is at or before `now` (default: the current time)."""
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    def is_active(self) -> bool:
        """Neither revoked nor expired."""
        return self.revoked_at is None and not self.is_expired()

    def has_scope(self, scope: str) -> bool:
        """Whether the token grants `scope`, directly or through a stronger one."""
        # admin implies every other scope; manage implies read.
        granted = set(self.scopes)
        return scope in granted or "admin" in granted or (scope == "read" and "manage" in granted)

    def allows_model(self, name: str) -> bool:
        """Whether the token may reach model `name`: any model when its list is empty."""
        return not self.model_names or name in self.model_names

    def snapshot(self) -> dict[str, Any]:
        """The audit log's view of the token (never its digest)."""
        return {
            "name": self.name,
            "prefix": self.prefix,
            "user": self.user.username,
            "scopes": list(self.scopes),
            "model_names": list(self.model_names),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def valid_scopes(scopes: list[str]) -> list[str]:
    """The scopes deduplicated in ALL_SCOPES order; ValueError naming any unknown one."""
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}: expected {', '.join(ALL_SCOPES)}")
    return sorted(set(scopes), key=ALL_SCOPES.index)


class AppendOnlyError(Exception):
    """Audit events are never changed or removed."""


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    """Refuses bulk updates and deletes, which bypass the model's own save() and delete()."""

    def update(self, **kwargs: Any) -> int:
        """Never: raises AppendOnlyError."""
        raise AppendOnlyError("audit events cannot be updated")

    def delete(self) -> tuple[int, dict[str, int]]:
        """Never: raises AppendOnlyError."""
        raise AppendOnlyError("audit events cannot be deleted")


class AuditEvent(models.Model):
    """One mutation, chained to the previous event by hash. Plain columns, no foreign keys,
    so that deleting a user or a model never rewrites history."""

    created_at = models.DateTimeField(db_index=True)
    actor_user_id = models.IntegerField(null=True, blank=True)
    actor_username = models.CharField(max_length=150, blank=True, db_index=True)
    actor_token_id = models.IntegerField(null=True, blank=True)
    actor_token_name = models.CharField(max_length=100, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, db_index=True)
    object_id = models.CharField(max_length=64, blank=True, db_index=True)
    object_repr = models.CharField(max_length=200, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    client_address = models.CharField(max_length=45, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    # The HMAC key (PADDOCK_AUDIT_KEYS id) that signed `hash`; every event is keyed since 0003.
    key_id = models.CharField(max_length=32, blank=True, default="")

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action} {self.object_repr}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Insert only: saving an event already stored raises AppendOnlyError."""
        if not self._state.adding:
            raise AppendOnlyError("audit events cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        """Never: raises AppendOnlyError."""
        raise AppendOnlyError("audit events cannot be deleted")

    @property
    def actor_label(self) -> str:
        """Who acted, for people: the username, its token if any, or "system"."""
        if self.actor_token_name:
            return f"{self.actor_username} (token {self.actor_token_name})"
        return self.actor_username or "system"

    def compute_hash(self, key: bytes | None = None) -> str:
        """HMAC-SHA256 under `key` (plain SHA-256 without one: events before the chain was keyed)
        of the previous hash and every recorded column, as canonical JSON."""
        import json

        created = self.created_at.astimezone(UTC).isoformat(timespec="microseconds")
        payload = {
            "prev": self.prev_hash,
            "created_at": created,
            "actor_user_id": self.actor_user_id,
            "actor_username": self.actor_username,
            "actor_token_id": self.actor_token_id,
            "actor_token_name": self.actor_token_name,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "object_repr": self.object_repr,
            "before": self.before,
            "after": self.after,
            "client_address": self.client_address,
            "request_id": self.request_id,
        }
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
        if key is None:
            return hashlib.sha256(canonical).hexdigest()
        return hmac.new(key, canonical, hashlib.sha256).hexdigest()
