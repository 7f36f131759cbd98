"""Stream bindings through the real worker (its stream runner beside the batcher), the session's
Redis and PostgreSQL: the deployment's split decides the answering version per message as it does
for REST (sticky by the A/B key's field), the shadow version is mirrored and compared, answered
messages count in the versions' live figures, and a paused binding stops being read."""

import json
import time
import uuid
from typing import Any

import numpy as np
import pytest
import redis
from django.conf import settings

from console.audit import Actor
from registry import services as registry
from serving import live, livestats
from serving import services as serving
from serving.models import BindingState, StreamBinding
from serving.streams import services as streams
from tests import models as built
from tests.conftest import wait_until
from tests.integration.conftest import register_ready


@pytest.fixture
def split(transactional_db: Any, cast: dict[str, Any], teams: dict[str, Any], celery_worker: Any) -> Any:
    """Model `iris` (team ml) with v1 and v2 split 50/50, A/B-sticky by the parameter `user`, and
    v3 as the shadow of every request."""
    actor = Actor(user=cast["engineer"])
    model = registry.create_model(actor=actor, name="iris", team=teams["ml"])
    for seed in (1, 2, 3):
        register_ready(actor=actor, model=model, data=built.mlp_onnx(inputs=8, outputs=3, seed=seed))
    serving.configure_deployment(actor=actor, model=model, changes={
        "active_version": 1, "routes": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}],
        "sticky_by": "parameter", "sticky_key": "user", "shadow_version": 3, "shadow_percent": 100.0})
    return model


def message(rng: np.random.Generator, user: str) -> dict[bytes, bytes]:
    row = rng.standard_normal((1, 8)).astype(np.float32)
    return {b"x": row.tobytes(), b"x.shape": b"1,8", b"x.datatype": b"FP32", b"user": user.encode()}


def test_the_split_decides_each_message_and_the_shadow_and_figures_follow(split: Any, cast: dict[str, Any]) -> None:
    conn: Any = redis.Redis.from_url(settings.REDIS_URL)  # typed loosely: bytes in, bytes out
    source = f"ml:events-{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(3)
    users = [f"user-{i}" for i in range(40)]
    for i in range(400):
        conn.xadd(source, message(rng, users[i % len(users)]))
    binding = streams.create_binding(actor=Actor(user=cast["engineer"]), model=split, name="events", source=source)
    try:
        wait_until(lambda: conn.xlen(binding.sink) >= 400, timeout=60, interval=0.2)
        sink = conn.xrange(binding.sink)
        by_user: dict[str, set[int]] = {}
        ids = {entry_id.decode(): fields for entry_id, fields in conn.xrange(source)}
        for _, fields in sink:
            user = ids[fields[b"source_id"].decode()][b"user"].decode()
            by_user.setdefault(user, set()).add(int(fields[b"version"]))
        assert all(len(versions) == 1 for versions in by_user.values()), by_user  # sticky per user
        answering = [next(iter(v)) for v in by_user.values()]
        assert set(answering) == {1, 2}, answering  # both arms of the split answer
        assert json.loads(sink[0][1][b"outputs"])[0]["shape"] == [1, 3]

        def counted() -> dict[int, Any] | None:
            versions = live.model_figures(split, 60, livestats.client())["versions"]
            figures = {v["version"]: v["summary"] for v in versions}
            done = sum(figures.get(n, {}).get("requests", 0) for n in (1, 2))
            return figures if done >= 400 and figures.get(3, {}).get("shadow", {}).get("requests") else None

        figures = wait_until(counted, timeout=30, interval=0.5)
        assert sum(figures[n]["requests"] for n in (1, 2)) == 400, figures
        assert figures[3]["shadow"]["requests"] > 0, figures  # every batch mirrored to v3 and compared

        streams.pause_binding(actor=Actor(user=cast["engineer"]), binding=binding)
        wait_until(lambda: StreamBinding.objects.get(pk=binding.pk).state == BindingState.PAUSED, timeout=5)
        time.sleep(2.5)  # the runner syncs every second: by now it has stopped reading the binding
        conn.xadd(source, message(rng, "late"))
        time.sleep(2.0)
        assert conn.xlen(binding.sink) == 400  # a paused binding is not read
        streams.resume_binding(actor=Actor(user=cast["engineer"]), binding=binding)
        wait_until(lambda: conn.xlen(binding.sink) == 401, timeout=30, interval=0.2)
    finally:
        conn.delete(source, binding.sink, binding.dead_letter, f"{source}:paddock:answered")
