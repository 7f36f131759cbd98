"""The messages between web processes and workers, over Redis, msgpack-encoded: the schema is
declared here once, and the enqueue script (serving/v2/dataplane.py) is written with these names.

Keys start with PADDOCK_REDIS_PREFIX ("paddock"), so that several installations (or test runs)
can share one Redis. Per version: stream `{prefix}:v{id}-{sha256[:12]}:requests` (consumer
group `workers`) holds request entries with one field `m`. Per web process: pub/sub channel
`{prefix}:reply:{instance}` receives the replies, one message per batch and web process.
Workers announce themselves in hash `{prefix}:workers` (field: consumer name);
`{prefix}:wanted` (sorted set) lists versions requested that no worker held.

A request entry's `m` (web → worker), a map:

    key  constant     type              meaning
    r    RID          int               the request's id in its web process
    to   REPLY_TO     str               the web process's reply channel
    d    DEADLINE     int (ms epoch)    answer with `deadline` after this, never run it
    p    PRIORITY     int               lower first; 0 (the default) after every explicit one
    t    ENQUEUED     int (ms epoch)    when the web process sent it
    n    ROWS         int               its batch size (first dimension)
    i    INPUTS       [tensor]          each [name, datatype, shape, raw bytes | list of bytes]

A reply (worker or enqueue script → web), one map per request, a list per message:

    key  constant     type              meaning
    r    RID          int               the request it answers
    o    OUTPUTS      [tensor] | nil    as INPUTS; nil on error
    k    KIND         str               "" on success, else an error kind (console/errors.py)
    e    ERROR        str               the error's message for the caller
    x    DEPTH        int               with kind `queue_full`: the queue's depth at refusal
    q    QUEUE_MS     float             time in the queue
    c    COMPUTE_MS   float             the batch's inference time
    b    BATCH        int               rows in the batch it ran in
"""

import string
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
from django.conf import settings

from registry.datatypes import V2_TO_NUMPY

GROUP = "workers"
ENTRY_FIELD = "m"  # a request entry's one field

# The request entry's keys.
RID, REPLY_TO, DEADLINE, PRIORITY, ENQUEUED, ROWS, INPUTS = "r", "to", "d", "p", "t", "n", "i"
# A reply's keys (RID as in the request).
OUTPUTS, KIND, ERROR, DEPTH, QUEUE_MS, COMPUTE_MS, BATCH = "o", "k", "e", "x", "q", "c", "b"

# The names a Lua script may use for these keys: `${RID}` in its text (see `lua`).
SCHEMA = {"ENTRY_FIELD": ENTRY_FIELD, "RID": RID, "REPLY_TO": REPLY_TO, "DEADLINE": DEADLINE,
          "PRIORITY": PRIORITY, "ENQUEUED": ENQUEUED, "ROWS": ROWS, "INPUTS": INPUTS, "OUTPUTS": OUTPUTS,
          "KIND": KIND, "ERROR": ERROR, "DEPTH": DEPTH, "QUEUE_MS": QUEUE_MS, "COMPUTE_MS": COMPUTE_MS,
          "BATCH": BATCH}

# A worker whose last heartbeat is older than this is taken for dead.
HEARTBEAT_FRESH_SECONDS = 5.0
# The longest a deployment's partial batch may wait to fill (max_queue_delay_ms): a worker holds
# it aside while serving other versions, but its callers wait, and claims start at 5 s idle.
MAX_QUEUE_DELAY_MS = 1000


def stream_key(version_id: int, sha256: str) -> str:
    # The checksum makes the stream name the artifact, not just a row id that a restored or
    # reset database could give to other bytes.
    """The version's request stream."""
    return f"{settings.PADDOCK_REDIS_PREFIX}:v{version_id}-{sha256[:12]}:requests"


def reply_key(instance: str) -> str:
    """A web process's reply channel."""
    return f"{settings.PADDOCK_REDIS_PREFIX}:reply:{instance}"


def workers_key() -> str:
    """The hash of workers' heartbeats."""
    return f"{settings.PADDOCK_REDIS_PREFIX}:workers"


def wanted_key() -> str:
    """The sorted set of versions requested that no worker held (cold starts)."""
    return f"{settings.PADDOCK_REDIS_PREFIX}:wanted"


def now_ms() -> int:
    """Wall-clock milliseconds, the unit of deadlines on the wire."""
    return int(time.time() * 1000)


def pack_tensor(name: str, datatype: str, array: np.ndarray) -> list[Any]:
    """A tensor for the wire: raw bytes for numbers, a list of bytes for BYTES."""
    if datatype == "BYTES":
        return [name, datatype, list(array.shape), list(array.ravel())]
    return [name, datatype, list(array.shape), np.ascontiguousarray(array).tobytes()]


def unpack_tensor(packed: list[Any]) -> tuple[str, np.ndarray]:
    """A tensor from the wire, as an array (numbers without a copy)."""
    name, datatype, shape, data = packed
    if datatype == "BYTES":
        array = np.empty(len(data), dtype=object)
        array[:] = data
        return name, array.reshape(shape)
    return name, np.frombuffer(data, dtype=V2_TO_NUMPY[datatype]).reshape(shape)


@dataclass(slots=True)
class Job:
    """One request as a worker sees it."""

    entry_id: bytes
    rid: int
    reply_to: str
    deadline_ms: int
    priority: int
    enqueued_ms: int
    inputs: dict[str, np.ndarray]
    rows: int


def lua(script: str, **names: str) -> str:
    """A Lua script's text with the schema's names (`${RID}`), and any others given, replaced."""
    return string.Template(script).substitute(SCHEMA, **names)


def pack_request(*, rid: int, reply_to: str, deadline_ms: int, priority: int, rows: int,
                 tensors: list[list[Any]]) -> bytes:
    """A request entry's `m`, stamped with the time it is enqueued."""
    return msgpack.packb({RID: rid, REPLY_TO: reply_to, DEADLINE: deadline_ms, PRIORITY: priority,
                          ENQUEUED: now_ms(), ROWS: rows, INPUTS: tensors})


def unpack_request(entry_id: bytes, payload: bytes) -> Job:
    """A request entry as the worker's Job."""
    message = msgpack.unpackb(payload)
    inputs = dict(unpack_tensor(t) for t in message[INPUTS])
    return Job(entry_id, message[RID], message[REPLY_TO], message[DEADLINE], message[PRIORITY], message[ENQUEUED],
               inputs, message[ROWS])


def reply(*, rid: int, outputs: list[list[Any]] | None = None, kind: str = "", error: str = "",
          queue_ms: float = 0.0, compute_ms: float = 0.0, batch: int = 0) -> dict[str, Any]:
    """One request's reply: its outputs, or an error `kind` (console/errors.py) and message."""
    return {RID: rid, OUTPUTS: outputs, KIND: kind, ERROR: error, QUEUE_MS: queue_ms, COMPUTE_MS: compute_ms,
            BATCH: batch}


def pack_replies(replies: list[dict[str, Any]]) -> bytes:
    """A worker's replies to one web process from one batch: one message."""
    return msgpack.packb(replies)


def unpack_replies(message: bytes) -> list[dict[str, Any]]:
    """A reply message's list of replies."""
    return msgpack.unpackb(message)


def pack_heartbeat(beat: dict[str, Any]) -> bytes:
    """A worker's heartbeat, stamped with the time it was written."""
    return msgpack.packb({**beat, "ts": time.time()})


def holders_by_stream(beats: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Version stream → the workers holding it, from decoded heartbeats (fresh_heartbeats)."""
    holders: dict[str, list[str]] = {}
    for worker, beat in beats.items():
        for held in beat.get("held", []):
            holders.setdefault(held["stream"], []).append(worker)
    return holders


def fresh_heartbeats(raw: Mapping[Any, Any]) -> dict[str, dict[str, Any]]:
    """The workers hash (HGETALL: worker name → packed heartbeat, as bytes) decoded, keeping
    only workers whose heartbeat is fresh."""
    now = time.time()
    beats = {name.decode() if isinstance(name, bytes) else name: msgpack.unpackb(payload)
             for name, payload in raw.items()}
    return {name: beat for name, beat in beats.items() if now - beat["ts"] <= HEARTBEAT_FRESH_SECONDS}
