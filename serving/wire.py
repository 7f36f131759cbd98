"""The messages between web processes and workers, over Redis, msgpack-encoded.

Keys start with PADDOCK_REDIS_PREFIX ("paddock"), so that several installations (or test runs)
can share one Redis. Per version: stream `{prefix}:v{id}-{sha256[:12]}:requests` (consumer
group `workers`) holds request entries with one field `m`. Per web process: pub/sub channel
`{prefix}:reply:{instance}` receives the replies, one message per batch and web process.
Workers announce themselves in hash `{prefix}:workers` (field: consumer name);
`{prefix}:wanted` (sorted set) lists versions requested that no worker held."""

import time
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
from django.conf import settings

from registry.datatypes import V2_TO_NUMPY

GROUP = "workers"
# A worker whose last heartbeat is older than this is taken for dead.
HEARTBEAT_FRESH_SECONDS = 5.0


def stream_key(version_id: int, sha256: str) -> str:
    # The checksum makes the stream name the artifact, not just a row id that a restored or
    # reset database could give to other bytes.
    return f"{settings.PADDOCK_REDIS_PREFIX}:v{version_id}-{sha256[:12]}:requests"


def reply_key(instance: str) -> str:
    return f"{settings.PADDOCK_REDIS_PREFIX}:reply:{instance}"


def workers_key() -> str:
    return f"{settings.PADDOCK_REDIS_PREFIX}:workers"


def wanted_key() -> str:
    return f"{settings.PADDOCK_REDIS_PREFIX}:wanted"


def now_ms() -> int:
    return int(time.time() * 1000)


def pack_tensor(name: str, datatype: str, array: np.ndarray) -> list[Any]:
    if datatype == "BYTES":
        return [name, datatype, list(array.shape), list(array.ravel())]
    return [name, datatype, list(array.shape), np.ascontiguousarray(array).tobytes()]


def unpack_tensor(packed: list[Any]) -> tuple[str, np.ndarray]:
    name, datatype, shape, data = packed
    if datatype == "BYTES":
        array = np.empty(len(data), dtype=object)
        array[:] = data
        return name, array.reshape(shape)
    return name, np.frombuffer(data, dtype=V2_TO_NUMPY[datatype]).reshape(shape)


@dataclass(slots=True)
class Job:
    """One request as a worker sees it."""

    entry_id: str
    rid: int
    reply_to: str
    deadline_ms: int
    priority: int
    enqueued_ms: int
    inputs: dict[str, np.ndarray]
    rows: int


def pack_request(*, rid: int, reply_to: str, deadline_ms: int, priority: int, rows: int,
                 tensors: list[list[Any]]) -> bytes:
    return msgpack.packb({"r": rid, "to": reply_to, "d": deadline_ms, "p": priority, "t": now_ms(),
                          "n": rows, "i": tensors})


def unpack_request(entry_id: str, payload: bytes) -> Job:
    message = msgpack.unpackb(payload)
    inputs = dict(unpack_tensor(t) for t in message["i"])
    return Job(entry_id, message["r"], message["to"], message["d"], message["p"], message["t"], inputs, message["n"])


def reply(*, rid: int, outputs: list[list[Any]] | None = None, error: str = "", status: int = 200,
          queue_ms: float = 0.0, compute_ms: float = 0.0, batch: int = 0) -> dict[str, Any]:
    return {"r": rid, "o": outputs, "e": error, "s": status, "q": queue_ms, "c": compute_ms, "b": batch}


def pack_replies(replies: list[dict[str, Any]]) -> bytes:
    """A worker's replies to one web process from one batch: one message."""
    return msgpack.packb(replies)


def unpack_replies(message: bytes) -> list[dict[str, Any]]:
    return msgpack.unpackb(message)


def pack_heartbeat(beat: dict[str, Any]) -> bytes:
    return msgpack.packb({**beat, "ts": time.time()})


def holders_by_stream(beats: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Version stream → the workers holding it, from decoded heartbeats (fresh_heartbeats)."""
    holders: dict[str, list[str]] = {}
    for worker, beat in beats.items():
        for held in beat.get("held", []):
            holders.setdefault(held["stream"], []).append(worker)
    return holders


def fresh_heartbeats(raw: dict[bytes, bytes]) -> dict[str, dict[str, Any]]:
    """The workers hash (HGETALL) decoded, keeping only workers whose heartbeat is fresh."""
    now = time.time()
    beats = {name.decode(): msgpack.unpackb(payload) for name, payload in raw.items()}
    return {name: beat for name, beat in beats.items() if now - beat["ts"] <= HEARTBEAT_FRESH_SECONDS}
