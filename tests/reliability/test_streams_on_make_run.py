"""Stream scoring on `make run` itself, with its defaults (SQLite, one worker, its embedded Redis):
a binding created over the API scores 10,000 pre-filled messages through the worker's stream
runner; the worker is SIGKILLed mid-run, and every source message still ends with exactly one
prediction in the sink (the messages it had read but not acknowledged are claimed by the worker
runstack starts in its place), equal to onnxruntime run directly; poison messages go to the
dead-letter stream once each, with their reason, without holding up the rest."""

import json
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from tests import models as built
from tests.conftest import wait_until
from tests.reliability.stack import GUARD_SECONDS, WORKER, runstack

MESSAGES = 10_000
SOURCE, SINK, DEAD = "demo:events", "demo:events:predictions", "demo:events:dead"
POISON = {
    2500: ({b"inputs": b"[{"}, "field 'inputs' is not valid JSON: "),
    7500: ({b"x": b"\x00" * 12, b"x.shape": b"1,3", b"x.datatype": b"FP32"},
           "input 'x': expected shape [-1, 256], received [1, 3]"),
}


def test_a_binding_scores_every_message_once_though_its_worker_is_killed_mid_run(tmp_path: Path) -> None:
    artifact = built.slow_onnx(width=256, layers=8)  # slow enough per batch that the kill lands mid-run
    with runstack(tmp_path, "manage", "read") as stack:
        stack.upload("slow", artifact)
        # The model is in team 'demo' (stack.upload makes it there): its keys start with 'demo:'.
        redis: Any = stack.redis()  # typed loosely: bytes in, bytes out
        x = np.random.default_rng(11).standard_normal((MESSAGES, 256)).astype(np.float32)
        ids: list[str] = []
        pipe = redis.pipeline(transaction=False)
        for i in range(MESSAGES):
            fields = POISON[i][0] if i in POISON else {
                b"x": x[i].tobytes(), b"x.shape": b"1,256", b"x.datatype": b"FP32"}
            pipe.xadd(SOURCE, fields)
            if len(pipe) == 1000:
                ids.extend(i.decode() for i in pipe.execute())
        ids.extend(i.decode() for i in pipe.execute())
        binding = stack.api("POST", "/api/v1/models/slow/streams/",
                            json.dumps({"name": "events", "source": SOURCE}).encode())
        assert (binding["sink"], binding["dead_letter"]) == (SINK, DEAD)

        written = wait_until(lambda: n if 0.2 * MESSAGES <= (n := redis.xlen(SINK)) < 0.6 * MESSAGES else None,
                             timeout=GUARD_SECONDS, interval=0.01)
        worker = stack.child(WORKER)
        os.kill(worker, signal.SIGKILL)
        killed_at = time.monotonic()

        def all_answered() -> bool:
            return redis.xlen(SINK) + redis.xlen(DEAD) >= MESSAGES

        wait_until(all_answered, timeout=GUARD_SECONDS * 2, interval=0.5)
        wait_until(lambda: stack.api("GET", "/api/v1/models/slow/streams/events/")["figures"]["lag"] == 0,
                   timeout=GUARD_SECONDS, interval=0.5)
        assert stack.child(WORKER) != worker
        metrics = urllib.request.urlopen(urllib.request.Request(
            f"{stack.url}/metrics", headers={"Authorization": f"Bearer {stack.token}"}), timeout=30).read().decode()
        sink = redis.xrange(SINK)
        dead = redis.xrange(DEAD)
        pending = redis.xpending(SOURCE, "paddock")["pending"]
    answered = [fields[b"source_id"].decode() for _, fields in sink]
    assert len(answered) == len(set(answered)) == MESSAGES - len(POISON)  # each once
    assert set(answered) == {ids[i] for i in range(MESSAGES) if i not in POISON}
    assert pending == 0
    position = {source_id: i for i, source_id in enumerate(ids)}
    got = np.stack([np.frombuffer(fields[b"y"], dtype=np.float32) for _, fields in sink]) \
        if b"y" in sink[0][1] else np.stack([json.loads(fields[b"outputs"])[0]["data"] for _, fields in sink])
    rows = [position[source_id] for source_id in answered]
    expected = ort.InferenceSession(artifact).run(None, {"x": x[rows]})[0]
    np.testing.assert_allclose(got.astype(np.float32), expected, rtol=1e-4, atol=1e-5)
    assert sorted((position[f[b"source_id"].decode()], f[b"reason"].decode()[:len(POISON[position[
        f[b"source_id"].decode()]][1])]) for _, f in dead) == sorted((i, reason) for i, (_, reason) in POISON.items())
    assert 'paddock_stream_lag_messages{binding="events",model="slow"} 0.0' in metrics, metrics[-2000:]
    assert f'paddock_stream_dead_letters_total{{binding="events",model="slow"}} {len(POISON)}.0' in metrics
    print(f"\nkilled with {written} of {MESSAGES} predictions written; all answered "
          f"{time.monotonic() - killed_at:.1f} s after the kill")
