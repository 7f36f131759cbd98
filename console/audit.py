"""Who did something, and the one way to write it down: `record_event`, inside the caller's
transaction, chained to the previous event by an HMAC under a key kept outside the database
(PADDOCK_AUDIT_KEYS, or one derived from SECRET_KEY), so that whoever can write the database
cannot recompute the chain. `anchor_audit_head_now` writes the chain's head where the database user cannot
rewrite it (a file and a log line), so that a cut tail is found too (`first_broken_link`)."""

import hashlib
import hmac
import ipaddress
import json
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.http import HttpRequest
from django.utils import timezone

from console.models import AuditEvent

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User

    from console.models import ApiToken

GENESIS_HASH = "0" * 64
DERIVED_KEY_ID = "secret-key"  # the key derived from SECRET_KEY when PADDOCK_AUDIT_KEYS is unset
logger = logging.getLogger("paddock.audit")
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


def audit_keys() -> list[tuple[str, bytes]]:
    """The chain's keys, the current one first: PADDOCK_AUDIT_KEYS ("id:secret,..."), or one
    derived from SECRET_KEY."""
    if not settings.PADDOCK_AUDIT_KEYS:
        derived = hmac.new(settings.SECRET_KEY.encode(), b"paddock audit chain", hashlib.sha256).digest()
        return [(DERIVED_KEY_ID, derived)]
    keys = []
    for item in settings.PADDOCK_AUDIT_KEYS:
        key_id, _, secret = item.partition(":")
        if not key_id or len(key_id) > 32 or len(secret) < 16:
            raise ImproperlyConfigured("PADDOCK_AUDIT_KEYS takes 'id:secret' items: an id of at most 32 "
                                       "characters and a secret of at least 16")
        keys.append((key_id, secret.encode()))
    return keys


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
    event.key_id, key = audit_keys()[0]
    event.hash = event.compute_hash(key)
    event.save()
    return event


def first_broken_link() -> tuple[int, str] | None:
    """Walk the chain from the start; return (event id, why) for the first event that does not
    hold, or None when every link holds and every anchor written so far is still in the chain."""
    keys = dict(audit_keys())
    expected_prev = GENESIS_HASH
    hashes: dict[int, str] = {}
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        if event.prev_hash != expected_prev:
            return event.pk, "its prev_hash does not match the hash of the event before it"
        if not event.key_id:
            return event.pk, "its hash is not keyed (written or rewritten without the audit key)"
        if event.key_id not in keys:
            return event.pk, f"it is signed with key '{event.key_id}', which PADDOCK_AUDIT_KEYS does not list"
        if event.compute_hash(keys[event.key_id]) != event.hash:
            return event.pk, "its contents do not match its hash (edited after it was written)"
        expected_prev = event.hash
        hashes[event.pk] = event.hash
    for anchor in read_anchors():
        kept = hashes.get(anchor["id"])
        if kept is None:
            last = max(hashes, default=0)
            return anchor["id"], (f"the chain ends at event {last} but the anchor of {anchor['at']} names event "
                                  f"{anchor['id']}: events were removed from its tail")
        if kept != anchor["hash"]:
            return anchor["id"], f"its hash differs from the one anchored at {anchor['at']} (the chain was rewritten)"
    return None


def anchor_audit_head_now() -> dict[str, Any] | None:
    """Append the chain's head (last id and hash) to PADDOCK_AUDIT_ANCHOR_FILE and log it; None
    for an empty chain. A deployment ships that file or log line somewhere the database's users
    cannot write (a log service, object storage with retention) so that it outlives them."""
    head = AuditEvent.objects.order_by("-id").values("id", "hash", "created_at").first()
    if head is None:
        return None
    anchor = {"id": head["id"], "hash": head["hash"], "event_at": head["created_at"].isoformat(),
              "at": timezone.now().isoformat(timespec="seconds")}
    path = Path(settings.PADDOCK_AUDIT_ANCHOR_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as anchors:
        anchors.write(json.dumps(anchor, sort_keys=True) + "\n")
    logger.warning("audit chain head: event %s hash %s", anchor["id"], anchor["hash"])
    return anchor


def read_anchors() -> list[dict[str, Any]]:
    """The anchors written so far (a missing file: none; an unreadable line is skipped with a warning)."""
    path = Path(settings.PADDOCK_AUDIT_ANCHOR_FILE)
    if not path.exists():
        return []
    anchors = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            anchor = json.loads(line)
            anchors.append({"id": int(anchor["id"]), "hash": str(anchor["hash"]), "at": str(anchor["at"])})
        except (ValueError, KeyError, TypeError):
            logger.warning("%s line %d is not an anchor; skipped", path, number)
    return anchors
