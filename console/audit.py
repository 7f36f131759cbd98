"""Who did something, and the one way to write it down: `record_event`, inside the caller's
transaction, chained by hash to the previous event."""

import ipaddress
import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from django.db import connection
from django.http import HttpRequest
from django.utils import timezone

from console.models import AuditEvent

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User

    from console.models import ApiToken

GENESIS_HASH = "0" * 64
# Any constant: serialises writers of the chain on Postgres until their transaction ends.
_AUDIT_LOCK_KEY = 0x5041_4444  # "PADD"


@dataclass(frozen=True)
class Actor:
    """The person (and token) behind a change, and where the change came from."""

    user: "AbstractBaseUser | AnonymousUser | None" = None
    token: "ApiToken | None" = None
    client_address: str = ""
    request_id: str = ""
    label: str = ""

    @classmethod
    def from_request(cls, request: HttpRequest) -> "Actor":
        token = getattr(request, "auth", None)
        from console.models import ApiToken

        return cls(
            user=getattr(request, "user", None),
            token=token if isinstance(token, ApiToken) else None,
            client_address=client_address(request),
            request_id=getattr(request, "request_id", ""),
        )

    @classmethod
    def system(cls, label: str) -> "Actor":
        """A change made by Paddock itself (a worker, beat, a management command)."""
        return cls(label=label, request_id=f"system-{uuid.uuid4().hex[:12]}")

    @property
    def person(self) -> "User | None":
        """The signed-in user behind the change, for `created_by`/`updated_by`; None for the system."""
        if self.user is not None and self.user.is_authenticated:
            return cast("User", self.user)  # AUTH_USER_MODEL is Django's User
        return None

    @property
    def username(self) -> str:
        if self.user is not None and self.user.is_authenticated:
            return self.user.get_username()
        return self.label or "system"


def client_address(request: HttpRequest) -> str:
    raw = request.META.get("REMOTE_ADDR", "")
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return ""


def _json_safe(value: Any) -> Any:
    return None if value is None else json.loads(json.dumps(value, default=str))


def record_event(
    *,
    actor: Actor,
    action: str,
    obj: Any = None,
    object_type: str = "",
    object_id: str = "",
    before: Any = None,
    after: Any = None,
) -> AuditEvent:
    """Append one event. Must run inside the transaction of the change it describes."""
    if not connection.in_atomic_block:
        raise RuntimeError("record_event must run inside the transaction of the change it records")
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
    if connection.vendor == "postgresql":
        # Two concurrent writers must not both chain onto the same previous event.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_AUDIT_LOCK_KEY])
    previous = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
    user = actor.person
    event = AuditEvent(
        created_at=timezone.now(),
        actor_user_id=user.pk if user else None,
        actor_username=actor.username,
        actor_token_id=actor.token.pk if actor.token else None,
        actor_token_name=actor.token.name if actor.token else "",
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=str(obj)[:200] if obj is not None else "",
        before=_json_safe(before),
        after=_json_safe(after),
        client_address=actor.client_address,
        request_id=actor.request_id,
        prev_hash=previous or GENESIS_HASH,
    )
    event.hash = event.compute_hash()
    event.save()
    return event


def first_broken_link() -> tuple[int, str] | None:
    """Walk the chain from the start; return (event id, why) for the first event that does not
    hold, or None when every link holds."""
    expected_prev = GENESIS_HASH
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        if event.prev_hash != expected_prev:
            return event.pk, "its prev_hash does not match the hash of the event before it"
        if event.compute_hash() != event.hash:
            return event.pk, "its contents do not match its hash (edited after it was written)"
        expected_prev = event.hash
    return None

