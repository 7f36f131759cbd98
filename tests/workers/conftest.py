"""Helpers for the worker tests: small real models on disk, their expected outputs computed
with numpy, and a real Redis request stream that records the replies published to it."""

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from django.conf import settings
from pytest_django.fixtures import Settings

from serving.v2 import wire
from tests import models as built


def model_file(folder: Path, data: bytes, name: str = "model.onnx") -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def mlp_expected(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """What tests.models.mlp_onnx(seed=seed) computes, in numpy: softmax(x·W + b)."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((8, 3)).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32)
    logits = x.astype(np.float64) @ weight + bias
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def rows(count: int, start: float) -> np.ndarray:
    """`count` distinct rows of 8 features: row i holds start + i, start + i + 0.1, ..."""
    return (start + np.arange(count, dtype=np.float32)[:, None] + np.arange(8, dtype=np.float32) / 10)


class Queue:
    """A version's request stream with its consumer group, and one web process's reply channel."""

    def __init__(self, client: redis.Redis, stream: str = "") -> None:
        """A given `stream` (a version's) is left without a group, as before any worker held it."""
        self.client = client
        self.stream = stream or f"{settings.PADDOCK_REDIS_PREFIX}:stream-{uuid.uuid4().hex[:8]}"
        self.channel = f"{settings.PADDOCK_REDIS_PREFIX}:reply-{uuid.uuid4().hex[:8]}"
        self.subscriber = client.pubsub()
        self.subscriber.subscribe(self.channel)
        assert self.subscriber.get_message(timeout=5)["type"] == "subscribe"
        if not stream:
            client.xgroup_create(self.stream, wire.GROUP, id="0", mkstream=True)

    def send(self, rid: int, x: np.ndarray, *, deadline_ms: int = 2**62, priority: int = 0,
             reply_to: str | None = None) -> str:
        payload = wire.pack_request(rid=rid, reply_to=reply_to or self.channel, deadline_ms=deadline_ms,
                                    priority=priority, rows=len(x), tensors=[wire.pack_tensor("x", "FP32", x)])
        entry_id = self.client.xadd(self.stream, {wire.ENTRY_FIELD: payload})
        return entry_id.decode() if isinstance(entry_id, bytes) else entry_id

    def messages(self, timeout: float = 0.5) -> list[list[dict[str, Any]]]:
        """The reply messages published so far, one list of replies per message."""
        found = []
        while (message := self.subscriber.get_message(timeout=timeout)) is not None:
            found.append(wire.unpack_replies(message["data"]))
        return found

    def pending(self) -> int:
        return int(self.client.xpending(self.stream, wire.GROUP)["pending"])

    def close(self) -> None:
        self.subscriber.close()
        self.client.delete(self.stream)


def outputs_of(answer: dict[str, Any]) -> dict[str, np.ndarray]:
    return dict(wire.unpack_tensor(packed) for packed in answer[wire.OUTPUTS])


@pytest.fixture
def redis_prefix(settings: Settings) -> str:
    """A key prefix of the test's own under the session's: a worker process another test of the
    session left running (tests/integration) neither joins these batchers' planning nor reads
    their streams."""
    settings.PADDOCK_REDIS_PREFIX = f"{settings.PADDOCK_REDIS_PREFIX}:workers-test-{uuid.uuid4().hex[:8]}"
    return str(settings.PADDOCK_REDIS_PREFIX)


@pytest.fixture
def client(redis_prefix: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(settings.REDIS_URL)
    yield connection
    keys = list(connection.scan_iter(match=f"{redis_prefix}:*", count=1000))
    if keys:
        connection.delete(*keys)
    connection.close()


@pytest.fixture
def queue(client: redis.Redis) -> Iterator[Queue]:
    made = Queue(client)
    yield made
    made.close()


@pytest.fixture
def mlp_path(tmp_path: Path) -> Path:
    return model_file(tmp_path, built.mlp_onnx())

