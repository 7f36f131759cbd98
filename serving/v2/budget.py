"""Byte budgets of the requests a web process holds while they wait for their answers. Counts
alone (64 MiB messages, 256 in flight per socket, 1024 sockets, nothing over REST) bounded
nothing a process could hold.

1. Each decoded request is charged what it holds here (`request_bytes`): its bytes as received
   (the body or message stays referenced until its answer is sent), its decoded inputs where they
   are copies (a binary tensor is a view of the body: counted once), for BYTES a Python object
   per element and their contents, and REQUEST_OVERHEAD_BYTES for the task, future and buffers
   around it (so a flood of tiny requests is bounded too).
2. The charge is taken from just after decoding until the answer is sent (`take`, then `give_back`
   in a `finally`: refusals, errors and cancellations never keep it), against two budgets of this
   process: its token's (PADDOCK_TOKEN_INFLIGHT_BYTES, so one tenant cannot take the whole
   process) and the process's (PADDOCK_WEB_INFLIGHT_BYTES). Passing either is QueueFull: 429 with
   Retry-After, the message naming the budget.
3. A request finds room when nothing else is in flight, whatever its size: its size alone is
   bounded by PADDOCK_MAX_INFER_BYTES, so no valid request is refused forever.

A few integer operations on the event loop's thread, so no lock. `paddock_web_inflight_bytes`
(and `paddock_shadow_backlog_bytes`, the shadow backlog's, serving.v2.dataplane) are read at
scrape time, never set per request."""

import sys
from collections.abc import Callable

import numpy as np
from prometheus_client import Gauge

from console.errors import QueueFull
from serving import metrics
from serving.v2.protocol import InferRequest

# What a request holds besides its bytes: tracemalloc counted 1.5 KB per request waiting in the
# data plane (its future, timer, coroutine frame, pending entry); the rest is the transport's task,
# scope or message around it.
REQUEST_OVERHEAD_BYTES = 4096
# A BYTES element decodes to a bytes object (a 33-byte header before its contents) and a pointer.
BYTES_ELEMENT_BYTES = sys.getsizeof(b"") + 8

IN_FLIGHT_BYTES = Gauge("paddock_web_inflight_bytes",
                        "Bytes of requests this web process holds until they are answered (budget: "
                        "PADDOCK_WEB_INFLIGHT_BYTES)", registry=metrics.REGISTRY)
SHADOW_BACKLOG_BYTES = Gauge("paddock_shadow_backlog_bytes",
                             "Bytes of mirrored requests waiting or running in this web process (cap: "
                             "PADDOCK_SHADOW_BACKLOG_BYTES)", registry=metrics.REGISTRY)


def request_bytes(request: InferRequest, received: int) -> int:
    """What a decoded request holds in this process while it waits: `received` (its body or
    message, as read), its inputs' copies, and REQUEST_OVERHEAD_BYTES."""
    size = received + REQUEST_OVERHEAD_BYTES
    strings = False
    for tensor in request.inputs:
        if tensor.datatype == "BYTES":
            size += tensor.array.size * BYTES_ELEMENT_BYTES
            strings = True
        elif _is_copy(tensor.array):
            size += tensor.array.nbytes
    return size + received if strings else size  # BYTES contents: copies of at most what was received


def _is_copy(array: np.ndarray) -> bool:
    """Whether the array owns its memory (JSON data, decoded) rather than viewing the body's
    (np.frombuffer over a binary tensor: its base chain ends in the body's memoryview)."""
    base = array.base
    while isinstance(base, np.ndarray):
        base = base.base
    return base is None


class InFlightBytes:
    """The bytes of this process's requests in flight, in total and per token (by its digest)."""

    def __init__(self, limit: int, token_limit: int) -> None:
        self.limit = limit
        self.token_limit = token_limit
        self.total = 0
        self.by_token: dict[str, int] = {}

    def take(self, token: str, size: int) -> int:
        """Count `size` bytes in flight for `token` and return them (for `give_back`), or refuse
        with QueueFull naming the budget they would pass: the token's first, then the process's."""
        held = self.by_token.get(token, 0)
        if held and held + size > self.token_limit:
            raise QueueFull(f"this token has {held} bytes of requests in flight in this web process, "
                            f"its budget is {self.token_limit}; retry later")
        if self.total and self.total + size > self.limit:
            raise QueueFull(f"this web process has {self.total} bytes of requests in flight, "
                            f"its budget is {self.limit}; retry later")
        self.by_token[token] = held + size
        self.total += size
        return size

    def give_back(self, token: str, size: int) -> None:
        """Release what `take` returned; call in a `finally` (0, nothing taken yet, is nothing)."""
        if size:
            held = self.by_token[token] - size
            if held:
                self.by_token[token] = held
            else:
                del self.by_token[token]  # tokens without requests in flight take no room
            self.total -= size


def export_gauges(in_flight: InFlightBytes, shadow_backlog: Callable[[], float]) -> None:
    """Point the gauges at this process's figures (read at scrape time, never set per request)."""
    IN_FLIGHT_BYTES.set_function(lambda: in_flight.total)
    SHADOW_BACKLOG_BYTES.set_function(shadow_backlog)
