"""Every change to a stream binding, each in one transaction with its audit event: create
(checked before anything is stored), pause, resume, delete; and the figures the workers publish
for a page of bindings.

Where a binding may read and write (docs/streams.md):
- On Paddock's own Redis (`redis_url` empty, or pointing at REDIS_URL's host and port) every key
  starts with the team's prefix, `<team>:`, so one team cannot read or fill another's streams.
- Elsewhere only on the hosts an operator lists in PADDOCK_STREAM_REDIS_HOSTS (none by default):
  a binding is a connection the workers open, so an open list would let anyone point them at any
  address on their network.
- Never under Paddock's own keys (`<PADDOCK_REDIS_PREFIX>:`), on any Redis.
A Redis URL's password is stored for the workers but never shown: messages, answers and audit
events carry `redacted_url`."""

import logging
import re
import unicodedata
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from console.audit import Actor, record_event
from console.errors import Conflict, InvalidInput
from registry.models import RegisteredModel
from serving.models import BindingState, StreamBinding
from serving.streams import status
from serving.v2.routes import load_model_route

logger = logging.getLogger(__name__)

MAX_KEY = 200
MAX_GROUP = 100
MAX_NAME = 60
MAX_URL = 300
MAX_BATCH = 4096
STARTS = ("0", "$")
OUTPUT_FORMATS = ("json", "binary")
_SLUG = re.compile(r"[-a-zA-Z0-9_]+")
_DEFAULT_PORT = 6379


def status_client() -> redis.Redis:
    """A connection to Paddock's Redis for the workers' figures (short timeout: a page or an
    answer never waits long on it)."""
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def figures(bindings: list[StreamBinding]) -> dict[int, dict[str, Any]] | None:
    """Each binding's lag, pending, undelivered and counters (serving.streams.status), or None
    while Redis cannot be reached: the figures are missing, the page and the API still answer."""
    try:
        return status.read_all(status_client(), [b.pk for b in bindings])
    except redis.RedisError as exc:
        logger.warning("stream figures unavailable: %s", exc)
        return None


def find_binding(model: RegisteredModel, name: str) -> StreamBinding | None:
    """The model's binding named `name`, or None (a NUL, which PostgreSQL refuses, names none)."""
    if "\x00" in name:
        return None
    return StreamBinding.objects.select_related("model", "created_by").filter(model=model, name=name).first()


# -- checks ------------------------------------------------------------------------------------

def _check_text(field: str, value: str, limit: int) -> None:
    if not value:
        raise InvalidInput(f"'{field}' must not be empty")
    if len(value) > limit:
        raise InvalidInput(f"'{field}' must be at most {limit} characters (it has {len(value)})")
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in value):
        raise InvalidInput(f"'{field}' must not contain spaces or control characters")


def _host_and_port(redis_url: str) -> tuple[str, int]:
    """The host and port a Redis URL connects to, read the way redis-py reads it."""
    if len(redis_url) > MAX_URL:
        raise InvalidInput(f"'redis_url' must be at most {MAX_URL} characters")
    if any(unicodedata.category(ch).startswith("C") or ch.isspace() for ch in redis_url):
        raise InvalidInput("'redis_url' must not contain spaces or control characters")
    try:
        parts = urlsplit(redis_url)
    except ValueError:  # an unclosed '[' of an IPv6 address
        raise InvalidInput("'redis_url' is not a URL: redis://host:6379/0") from None
    if parts.scheme.lower() not in ("redis", "rediss") or not redis_url.lower().startswith(("redis://", "rediss://")):
        raise InvalidInput("'redis_url' must start with redis:// or rediss://")
    if parts.query or parts.fragment:
        # redis-py turns query parameters into connection options (a unix socket path among them).
        raise InvalidInput("'redis_url' takes no query parameters: name the database in its path "
                           "(redis://host:6379/0)")
    try:
        port = parts.port or _DEFAULT_PORT
    except ValueError:
        raise InvalidInput("'redis_url' has an invalid port") from None
    if not parts.hostname:
        raise InvalidInput("'redis_url' must name a host: redis://host:6379/0")
    return unquote(parts.hostname).lower(), port


def _is_paddocks_redis(host: str, port: int) -> bool:
    """Whether a URL reaches the Redis Paddock itself uses (then its tenants' rules apply)."""
    own = urlsplit(settings.REDIS_URL)
    return own.scheme != "unix" and (own.hostname or "").lower() == host and (own.port or _DEFAULT_PORT) == port


def _check_redis_url(redis_url: str) -> bool:
    """InvalidInput unless the URL is allowed; True when it reaches Paddock's own Redis."""
    host, port = _host_and_port(redis_url)
    allowed = {entry.lower() for entry in settings.PADDOCK_STREAM_REDIS_HOSTS}
    if host not in allowed and f"{host}:{port}" not in allowed:
        raise InvalidInput(f"Redis host '{host}' is not allowed: an operator lists the hosts bindings may "
                           "read in PADDOCK_STREAM_REDIS_HOSTS")
    return _is_paddocks_redis(host, port)


def _check_keys(model: RegisteredModel, keys: dict[str, str], *, paddocks_redis: bool) -> None:
    for field, key in keys.items():
        _check_text(field, key, MAX_KEY)
    internal = f"{settings.PADDOCK_REDIS_PREFIX}:"
    team = f"{model.team.name}:"
    for key in keys.values():
        if key.startswith(internal):
            raise InvalidInput(f"stream keys must not start with '{internal}', where Paddock keeps its own keys: "
                               f"'{key}' does")
    if paddocks_redis:
        for key in keys.values():
            if not key.startswith(team):
                raise InvalidInput(f"on Paddock's Redis, stream keys must start with '{team}' (the team's "
                                   f"prefix): '{key}' does not")
    if len(set(keys.values())) != len(keys):
        raise InvalidInput("'source', 'sink' and 'dead_letter' must be three different streams")


def _check_options(*, start: str, output_format: str, batch_size: int) -> None:
    if start not in STARTS:
        raise InvalidInput("'start' must be '0' (the whole stream) or '$' (only new messages)")
    if output_format not in OUTPUT_FORMATS:
        raise InvalidInput("'output_format' must be 'json' or 'binary'")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH:
        raise InvalidInput(f"'batch_size' must be a whole number from 1 to {MAX_BATCH}")


def _taken(model: RegisteredModel, name: str) -> Conflict:
    return Conflict(f"model '{model.name}' already has a stream binding named '{name}'")


# -- changes -----------------------------------------------------------------------------------

def create_binding(*, actor: Actor, model: RegisteredModel, name: str, source: str, group: str = "paddock",
                   sink: str = "", dead_letter: str = "", redis_url: str = "", start: str = "0",
                   output_format: str = "json", batch_size: int = 256) -> StreamBinding:
    """Bind `source` to the model: the workers read it with the consumer group `group` (created
    where it starts, `start`, if missing) and write predictions to `sink` (default
    `<source>:predictions`), undecodable messages to `dead_letter` (default `<source>:dead`).
    400 for a refused name, key, URL or option; 409 for a name taken or a model that serves no
    version yet. One transaction with `stream.created`."""
    if not isinstance(name, str) or len(name) > MAX_NAME or not _SLUG.fullmatch(name):
        raise InvalidInput(f"'name' must be a slug of at most {MAX_NAME} characters: letters, digits, '-' and '_'")
    _check_text("source", source, MAX_KEY)
    keys = {"source": source, "sink": sink or f"{source}:predictions",
            "dead_letter": dead_letter or f"{source}:dead"}
    paddocks_redis = _check_redis_url(redis_url) if redis_url else True
    _check_keys(model, keys, paddocks_redis=paddocks_redis)
    _check_text("group", group, MAX_GROUP)
    _check_options(start=start, output_format=output_format, batch_size=batch_size)
    route = load_model_route(model.name)
    if route is None or route.active is None:
        raise Conflict(f"model '{model.name}' serves no version yet: a stream binding needs a version that "
                       "validated")
    if StreamBinding.objects.filter(model=model, name=name).exists():
        raise _taken(model, name)
    binding = StreamBinding(model=model, name=name, redis_url=redis_url, group=group, start=start,
                            output_format=output_format, batch_size=batch_size, created_by=actor.person, **keys)
    try:
        with transaction.atomic():
            binding.save()
            record_event(actor=actor, action="stream.created", obj=binding, after=binding.snapshot())
    except IntegrityError:  # the same name, created meanwhile by someone else
        raise _taken(model, name) from None
    return binding


def _set_state(*, actor: Actor, binding: StreamBinding, state: BindingState, action: str) -> StreamBinding:
    with transaction.atomic():
        binding = StreamBinding.objects.select_for_update().select_related("model").get(pk=binding.pk)
        if binding.state == state:
            raise Conflict(f"stream binding '{binding.name}' of model '{binding.model.name}' is already {state}")
        before = binding.snapshot()
        binding.state, binding.updated_at = state, timezone.now()
        binding.save(update_fields=["state", "updated_at"])
        record_event(actor=actor, action=action, obj=binding, before=before, after=binding.snapshot())
    return binding


def pause_binding(*, actor: Actor, binding: StreamBinding) -> StreamBinding:
    """Stop reading the source (the workers stop its scorer within a second; what the group was
    handed and not acknowledged stays pending for the resume). 409 when already paused."""
    return _set_state(actor=actor, binding=binding, state=BindingState.PAUSED, action="stream.paused")


def resume_binding(*, actor: Actor, binding: StreamBinding) -> StreamBinding:
    """Read the source again from where the consumer group stopped. 409 when already active."""
    return _set_state(actor=actor, binding=binding, state=BindingState.ACTIVE, action="stream.resumed")


def delete_binding(*, actor: Actor, binding: StreamBinding) -> None:
    """Remove the binding and, once committed, its figures; `stream.deleted`. The user's streams
    (source, sink, dead letters) and the consumer group on them are left alone: they are the
    user's data, and a binding made again with the same group goes on where this one stopped."""
    with transaction.atomic():
        binding = StreamBinding.objects.select_for_update().select_related("model").get(pk=binding.pk)
        binding_id = binding.pk
        record_event(actor=actor, action="stream.deleted", obj=binding, before=binding.snapshot())
        binding.delete()
        transaction.on_commit(lambda: _forget(binding_id))


def _forget(binding_id: int) -> None:
    try:
        status.forget(status_client(), binding_id)
    except redis.RedisError as exc:  # the figures of a binding that no longer exists are only noise
        logger.warning("could not remove the figures of stream binding %s: %s", binding_id, exc)
