"""Stream scoring against real Redis (DB 11, keys of the test's own) and real onnxruntime: the
sink and its source ids, both input forms and the binary output form, dead letters and their
reasons, deduplicated delivery, lag, and a consumer SIGKILLed mid-batch (workers/streams)."""

import os
import signal
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import orjson
import pytest
import redis

from console.errors import InvalidInput, ModelNotReady
from tests import models as built
from tests.workers.stream_child import ort_run, ort_signature, session_of
from workers.streams import DeadLetter, Lag, Message, Prediction, RedisStreamSource, StreamScorer
from workers.streams.messages import binary_output_clashes

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/11"
Arrays = dict[str, np.ndarray]
Fields = dict[Any, Any]  # a message's fields as given to XADD: str or bytes names and values


@dataclass
class Streams:
    """A test's own key names: source stream, sink, dead letters, and the client."""

    client: redis.Redis
    prefix: str

    @property
    def stream(self) -> str:
        return f"{self.prefix}:events"

    @property
    def sink(self) -> str:
        return f"{self.prefix}:scores"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}:dead"

    def source(self, consumer: str = "c1", **options: Any) -> RedisStreamSource:
        return RedisStreamSource(self.client, stream=self.stream, group="scorers", consumer=consumer,
                                 sink=self.sink, dead_letter=self.dead_letter, **options)

    def add(self, fields: Fields) -> str:
        return _text(self.client.xadd(self.stream, fields))

    def sink_entries(self) -> list[dict[str, bytes]]:
        return self._entries(self.sink)

    def dead_entries(self) -> list[dict[str, bytes]]:
        return self._entries(self.dead_letter)

    def _entries(self, key: str) -> list[dict[str, bytes]]:
        found: Any = self.client.xrange(key)
        return [{_text(k): v for k, v in fields.items()} for _, fields in found]


@pytest.fixture
def streams() -> Iterator[Streams]:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=10)
    prefix = f"streams-test-{uuid.uuid4().hex[:8]}"
    yield Streams(client, prefix)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def mlp_session(tmp_path: Path) -> onnxruntime.InferenceSession:
    path = tmp_path / "mlp.onnx"
    path.write_bytes(built.mlp_onnx())
    return session_of(path)


class Runs:
    """run() over a session, recording the batch each call received."""

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        self.inner = ort_run(session)
        self.calls: list[Arrays] = []

    def __call__(self, version: int, inputs: Arrays) -> Arrays:
        self.calls.append(inputs)
        return dict(self.inner(version, inputs))


def scorer_for(streams: Streams, session: onnxruntime.InferenceSession, run: Callable[[int, Arrays], Arrays],
               **options: Any) -> StreamScorer:
    signature = ort_signature(session)
    options.setdefault("choose", lambda message: 1)
    return StreamScorer(options.pop("source", None) or streams.source(), signature_of=lambda version: signature,
                        run=run, model="mlp", **options)


def features(count: int, start: float) -> np.ndarray:
    return (start + np.arange(count, dtype=np.float32)[:, None] + np.arange(8, dtype=np.float32) / 10)


def json_fields(x: np.ndarray, name: str = "x", datatype: str = "FP32") -> Fields:
    return {"inputs": orjson.dumps([{"name": name, "datatype": datatype, "shape": list(x.shape),
                                     "data": x.ravel().tolist()}])}


def binary_fields(x: np.ndarray, name: str = "x") -> Fields:
    return {name: x.astype("<f4").tobytes(), f"{name}.shape": ",".join(map(str, x.shape)).encode(),
            f"{name}.datatype": b"FP32"}


def json_outputs(entry: dict[str, bytes]) -> dict[str, np.ndarray]:
    return {o["name"]: np.asarray(o["data"], dtype=np.float32).reshape(o["shape"])
            for o in orjson.loads(entry["outputs"])}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def test_predictions_match_onnxruntime_and_name_their_source(streams: Streams, mlp_session: Any) -> None:
    inputs = [features(1, 0), features(3, 10), features(2, 20), features(1, 30)]
    ids = [streams.add(json_fields(x) if i % 2 == 0 else binary_fields(x)) for i, x in enumerate(inputs)]
    runs = Runs(mlp_session)
    scorer = scorer_for(streams, mlp_session, runs)

    assert scorer.step(block_ms=100) == 4

    assert len(runs.calls) == 1 and runs.calls[0]["x"].shape == (7, 8)  # one run for every message's rows
    entries = streams.sink_entries()
    assert [_text(e["source_id"]) for e in entries] == ids
    for entry, x in zip(entries, inputs, strict=True):
        (expected,) = mlp_session.run(["probs"], {"x": x})
        assert entry["model"] == b"mlp" and entry["version"] == b"1"
        np.testing.assert_allclose(json_outputs(entry)["probs"], expected, rtol=1e-6)
        assert int(entry["queued_ms"]) >= 0 and float(entry["compute_ms"]) >= 0
        assert orjson.loads(entry["outputs"])[0]["datatype"] == "FP32"
    assert (scorer.stats.read, scorer.stats.predicted, scorer.stats.batches, scorer.stats.rows) == (4, 4, 1, 7)
    assert streams.source().lag() == Lag(pending=0, undelivered=0)


def test_the_binary_output_form_carries_raw_little_endian_tensors(streams: Streams, mlp_session: Any) -> None:
    x = features(2, 5)
    source_id = streams.add(binary_fields(x))
    scorer_for(streams, mlp_session, Runs(mlp_session), output_format="binary").step(block_ms=100)

    (entry,) = streams.sink_entries()
    (expected,) = mlp_session.run(["probs"], {"x": x})
    assert _text(entry["source_id"]) == source_id and "outputs" not in entry
    assert entry["probs.shape"] == b"2,3" and entry["probs.datatype"] == b"FP32"
    np.testing.assert_array_equal(np.frombuffer(entry["probs"], dtype="<f4").reshape(2, 3), expected)


def test_a_bytes_input_in_tritons_layout_reaches_the_model_as_its_elements(streams: Streams) -> None:
    words = [b"stream", b"", b"scoring"]
    packed = b"".join(struct.pack("<I", len(w)) + w for w in words)
    streams.add({"text": packed, "text.shape": b"3", "text.datatype": b"BYTES"})
    signature = ([{"name": "text", "datatype": "BYTES", "shape": [-1]}],
                 [{"name": "length", "datatype": "INT64", "shape": [-1]}])
    seen: list[list[bytes]] = []

    def run(version: int, inputs: Arrays) -> Arrays:
        seen.append(list(inputs["text"]))
        return {"length": np.array([len(w) for w in inputs["text"]], dtype=np.int64)}

    StreamScorer(streams.source(), signature_of=lambda v: signature, choose=lambda m: 1, run=run,
                 model="words").step(block_ms=100)

    assert seen == [words]
    assert orjson.loads(streams.sink_entries()[0]["outputs"]) == [
        {"name": "length", "datatype": "INT64", "shape": [3], "data": [6, 0, 7]}]


POISON = [
    ("bad JSON", {"inputs": b"[{"},
     "field 'inputs' is not valid JSON: unexpected end of data: line 1 column 3 (char 2)"),
    ("unknown input", json_fields(features(1, 0), name="y"), "unknown input 'y': the model takes x"),
    ("wrong shape", json_fields(features(1, 0)[:, :4]), "input 'x': expected shape [-1, 8], received [1, 4]"),
    ("wrong datatype", json_fields(np.ones((1, 8), dtype=np.int64), datatype="INT64"),
     "input 'x': expected datatype FP32, received INT64"),
    ("too few values", {"inputs": b'[{"name":"x","datatype":"FP32","shape":[1,8],"data":[1,2,3]}]'},
     "input 'x': shape [1, 8] needs 8 elements, received 3"),
    ("parameters not an object", {**json_fields(features(1, 0)), "parameters": b"[1]"},
     "'parameters' of the request must be an object"),
    ("neither form", {"hello": b"world"}, "the message has no 'inputs' field (JSON form) and no '<name>.shape' and "
                                          "'<name>.datatype' fields (binary form)"),
    ("binary, missing datatype", {"x": b"\0" * 32, "x.shape": b"1,8"},
     "input 'x': the binary form needs fields 'x', 'x.shape' and 'x.datatype'; 'x.datatype' is missing"),
    ("binary, short data", {"x": b"\0" * 28, "x.shape": b"1,8", "x.datatype": b"FP32"},
     "input 'x': shape [1, 8] of FP32 needs 32 bytes, received 28"),
    ("binary, bad shape", {"x": b"\0" * 32, "x.shape": b"1,a", "x.datatype": b"FP32"},
     "input 'x': 'x.shape' must be comma-separated non-negative integers, received '1,a'"),
    ("binary, unknown datatype", {"x": b"\0" * 32, "x.shape": b"1,8", "x.datatype": b"FP33"},
     "input 'x': unknown datatype 'FP33'"),
]


@pytest.mark.parametrize(("fields", "reason"), [p[1:] for p in POISON], ids=[p[0] for p in POISON])
def test_a_poison_message_is_dead_lettered_with_the_reason_and_blocks_nobody(
        streams: Streams, mlp_session: Any, fields: Fields, reason: str) -> None:
    before = streams.add(json_fields(features(1, 0)))
    poison = streams.add(fields)
    after = streams.add(binary_fields(features(2, 1)))
    scorer = scorer_for(streams, mlp_session, Runs(mlp_session))

    assert scorer.step(block_ms=100) == 3

    assert [_text(e["source_id"]) for e in streams.sink_entries()] == [before, after]
    (dead,) = streams.dead_entries()
    assert _text(dead["source_id"]) == poison
    assert dead["reason"].decode() == reason
    assert {k: v for k, v in dead.items() if k.startswith("source.")} == {
        f"source.{k}": v if isinstance(v, bytes) else v.encode() for k, v in fields.items()}
    assert (scorer.stats.predicted, scorer.stats.dead) == (2, 1)
    assert streams.source().lag() == Lag(pending=0, undelivered=0)


def test_a_failing_batch_is_run_again_message_by_message(streams: Streams, mlp_session: Any) -> None:
    good = [streams.add(json_fields(features(1, i))) for i in range(3)]
    bad = streams.add(json_fields(np.full((1, 8), 666, dtype=np.float32)))
    runs = Runs(mlp_session)

    def run(version: int, inputs: Arrays) -> Arrays:
        if (inputs["x"] == 666).any():
            raise RuntimeError("the devil's row")
        return runs(version, inputs)

    scorer = scorer_for(streams, mlp_session, run)
    scorer.step(block_ms=100)

    assert [_text(e["source_id"]) for e in streams.sink_entries()] == good
    (dead,) = streams.dead_entries()
    assert (_text(dead["source_id"]), dead["reason"]) == (bad, b"inference failed: the devil's row")
    assert len(runs.calls) == 3  # the batch of 4 failed; then each alone, the bad one failing again


def test_a_run_that_says_retry_later_leaves_its_messages_pending(streams: Streams, mlp_session: Any) -> None:
    ids = [streams.add(json_fields(features(1, i))) for i in range(3)]
    ready = False
    runs = Runs(mlp_session)

    def run(version: int, inputs: Arrays) -> Arrays:
        if not ready:
            raise ModelNotReady("mlp v1 is loading")
        return runs(version, inputs)

    scorer = scorer_for(streams, mlp_session, run, claim_every=1, claim_idle_ms=0)
    scorer.step(block_ms=100)
    assert streams.sink_entries() == [] and streams.dead_entries() == []
    assert streams.source().lag() == Lag(pending=3, undelivered=0)
    assert scorer.stats.deferred == 3

    ready = True
    scorer.step(block_ms=100)  # claims its own pending messages (idle ≥ 0 ms)
    assert [_text(e["source_id"]) for e in streams.sink_entries()] == ids
    assert streams.source().lag() == Lag(pending=0, undelivered=0)


def test_each_chosen_version_answers_its_messages_in_one_batch(streams: Streams, tmp_path: Path) -> None:
    sessions = {version: session_of(built_path(tmp_path, version)) for version in (1, 2)}
    ids = [streams.add({**json_fields(features(1, i)), "user": str(i).encode()}) for i in range(6)]
    calls: list[int] = []

    def run(version: int, inputs: Arrays) -> Arrays:
        calls.append(version)
        return dict(ort_run(sessions[version])(version, inputs))

    signature = ort_signature(sessions[1])
    StreamScorer(streams.source(), signature_of=lambda v: signature, model="mlp", run=run,
                 choose=lambda message: 1 + int(message.fields[b"user"]) % 2).step(block_ms=100)

    assert sorted(calls) == [1, 2]
    for entry, (i, source_id) in zip(streams.sink_entries(), enumerate(ids), strict=True):
        version = 1 + i % 2
        (expected,) = sessions[version].run(["probs"], {"x": features(1, i)})
        assert (_text(entry["source_id"]), entry["version"]) == (source_id, str(version).encode())
        np.testing.assert_allclose(json_outputs(entry)["probs"], expected, rtol=1e-6)


def built_path(folder: Path, seed: int) -> Path:
    path = folder / f"mlp-{seed}.onnx"
    path.write_bytes(built.mlp_onnx(seed=seed))
    return path


def test_messages_of_different_row_shapes_run_in_separate_batches(streams: Streams) -> None:
    for width in (2, 3, 2):
        streams.add(json_fields(np.ones((1, width), dtype=np.float32)))
    signature = ([{"name": "x", "datatype": "FP32", "shape": [-1, -1]}],
                 [{"name": "total", "datatype": "FP32", "shape": [-1]}])
    shapes: list[tuple[int, ...]] = []

    def run(version: int, inputs: Arrays) -> Arrays:
        shapes.append(inputs["x"].shape)
        return {"total": inputs["x"].sum(axis=1)}

    StreamScorer(streams.source(), signature_of=lambda v: signature, choose=lambda m: 1, run=run,
                 model="sum").step(block_ms=100)

    assert sorted(shapes) == [(1, 3), (2, 2)]
    assert [orjson.loads(e["outputs"])[0]["data"] for e in streams.sink_entries()] == [[2.0], [3.0], [2.0]]


def test_the_shadow_sees_each_batch_and_its_failures_are_not_felt(streams: Streams, mlp_session: Any) -> None:
    streams.add(json_fields(features(2, 0)))
    seen: list[tuple[int, tuple[int, ...]]] = []

    def shadow(version: int, inputs: Arrays, outputs: Arrays) -> None:
        seen.append((version, inputs["x"].shape))
        raise RuntimeError("the shadow is broken")

    scorer = scorer_for(streams, mlp_session, Runs(mlp_session), shadow=shadow)
    scorer.step(block_ms=100)

    assert seen == [(1, (2, 8))]
    assert (scorer.stats.predicted, scorer.stats.shadow_errors) == (1, 1)


def test_delivering_the_same_source_ids_twice_writes_one_entry_each(streams: Streams) -> None:
    source = streams.source()
    ids = [streams.add({"n": str(i)}) for i in range(3)]
    taken = source.read(10, 0)
    predictions = [Prediction(m.id, {b"source_id": m.id.encode(), b"n": m.fields[b"n"]}) for m in taken[:2]]
    dead = [DeadLetter(taken[2].id, "poison", taken[2].fields)]

    assert source.deliver(predictions, dead, [m.id for m in taken]) == 2
    assert source.deliver(predictions, dead, [m.id for m in taken]) == 0

    assert [_text(e["source_id"]) for e in streams.sink_entries()] == ids[:2]
    assert [_text(e["source_id"]) for e in streams.dead_entries()] == ids[2:]
    assert source.lag() == Lag(pending=0, undelivered=0)


def test_answered_ids_older_than_dedup_seconds_are_forgotten(streams: Streams) -> None:
    source = streams.source(dedup_seconds=3600)
    streams.client.zadd(source.dedup_key, {"1-1": 0, "1-2": time.time()})  # answered long ago, and just now
    streams.add({"n": b"1"})
    (message,) = source.read(1, 0)

    assert source.deliver([Prediction(message.id, {b"source_id": message.id.encode()})], [], [message.id]) == 1

    answered: Any = streams.client.zrange(source.dedup_key, 0, -1)
    assert sorted(map(_text, answered)) == sorted(["1-2", message.id])


def test_a_message_that_choose_refuses_is_dead_lettered(streams: Streams, mlp_session: Any) -> None:
    kept = streams.add({**json_fields(features(1, 0)), "user": b"7"})
    refused = streams.add({**json_fields(features(1, 1)), "user": b"x"})

    def choose(message: Message) -> int:
        if not message.fields[b"user"].isdigit():
            raise InvalidInput("the split key 'user' must be a number")
        return 1

    scorer_for(streams, mlp_session, Runs(mlp_session), choose=choose).step(block_ms=100)

    assert [_text(e["source_id"]) for e in streams.sink_entries()] == [kept]
    assert [(_text(d["source_id"]), d["reason"]) for d in streams.dead_entries()] == [
        (refused, b"the split key 'user' must be a number")]


def test_a_message_claimed_from_a_slow_consumer_is_written_once(streams: Streams, mlp_session: Any) -> None:
    ids = [streams.add(json_fields(features(1, i))) for i in range(4)]
    fast = scorer_for(streams, mlp_session, Runs(mlp_session), source=streams.source("fast"), claim_idle_ms=0)
    runs = Runs(mlp_session)

    def slow_run(version: int, inputs: Arrays) -> Arrays:
        assert fast.step(block_ms=0) == 4  # while the slow one runs, the fast one claims and answers them
        return runs(version, inputs)

    slow = scorer_for(streams, mlp_session, slow_run, source=streams.source("slow"), claim_every=1000)
    slow.stats.rounds = 1  # no claim in its first round: it reads the new messages
    assert slow.step(block_ms=100) == 4

    assert [_text(e["source_id"]) for e in streams.sink_entries()] == ids
    assert (fast.stats.claimed, fast.stats.predicted) == (4, 4)
    assert (slow.stats.predicted, slow.stats.duplicates) == (0, 4)
    assert streams.source().lag() == Lag(pending=0, undelivered=0)


@pytest.mark.parametrize(("start", "scored"), [("0", 3), ("$", 1)])
def test_a_new_group_starts_at_the_backlog_or_at_the_end_as_asked(streams: Streams, mlp_session: Any,
                                                                   start: str, scored: int) -> None:
    for i in range(2):
        streams.add(json_fields(features(1, i)))
    scorer = scorer_for(streams, mlp_session, Runs(mlp_session), source=streams.source(start=start))
    streams.add(json_fields(features(1, 9)))

    assert scorer.step(block_ms=100) == scored
    assert len(streams.sink_entries()) == scored


def test_lag_counts_pending_and_undelivered_messages(streams: Streams) -> None:
    source = streams.source()
    for i in range(5):
        streams.add({"n": str(i)})
    assert source.lag() == Lag(pending=0, undelivered=5)

    taken = source.read(3, 0)
    assert source.lag() == Lag(pending=3, undelivered=2)

    source.deliver([], [], [taken[0].id])
    assert source.lag() == Lag(pending=2, undelivered=2)
    assert source.lag().total == 4


def test_lag_is_counted_where_redis_cannot_say_it(streams: Streams) -> None:
    ids = [streams.add({"n": str(i)}) for i in range(7)]
    source = streams.source(start=ids[1], lag_scan_limit=3)  # a group from an arbitrary id: no lag in XINFO
    assert streams.client.xinfo_groups(streams.stream)[0]["lag"] is None

    assert source.lag() == Lag(pending=0, undelivered=3, exact=False)
    source.lag_scan_limit = 5
    assert source.lag() == Lag(pending=0, undelivered=5, exact=True)
    source.lag_scan_limit = 100
    source.read(2, 0)
    assert source.lag() == Lag(pending=2, undelivered=3, exact=True)


def test_a_deleted_stream_gets_its_group_back(streams: Streams) -> None:
    source = streams.source()
    streams.client.delete(streams.stream)
    assert source.read(10, 0) == []

    source_id = streams.add({"n": b"1"})
    assert [m.id for m in source.read(10, 0)] == [source_id]


def test_the_source_refuses_a_client_that_decodes_responses(streams: Streams) -> None:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    with pytest.raises(ValueError) as refused:
        RedisStreamSource(client, stream=streams.stream, group="g", consumer="c", sink=streams.sink,
                          dead_letter=streams.dead_letter)
    assert str(refused.value) == "RedisStreamSource needs a client with decode_responses off: messages carry raw bytes"
    client.close()


def test_the_scorer_refuses_an_unknown_output_format(streams: Streams, mlp_session: Any) -> None:
    with pytest.raises(ValueError) as refused:
        scorer_for(streams, mlp_session, Runs(mlp_session), output_format="parquet")
    assert str(refused.value) == "output_format must be one of json, binary, not 'parquet'"


def test_binary_outputs_named_like_sink_fields_are_pointed_out() -> None:
    outputs = [{"name": "probs", "datatype": "FP32", "shape": [-1, 3]},
               {"name": "version", "datatype": "INT64", "shape": [-1]}]
    assert binary_output_clashes(outputs) == ["version"]


# -- a consumer killed mid-batch ------------------------------------------------------------------

KILL_MESSAGES = 10_000
KILL_BATCH = 256


def start_child(streams: Streams, model: Path, consumer: str, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.workers.stream_child", "--redis-url", REDIS_URL,
             "--stream", streams.stream, "--group", "scorers", "--consumer", consumer, "--sink", streams.sink,
             "--dead-letter", streams.dead_letter, "--model", str(model), "--batch-size", str(KILL_BATCH), *extra],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def wait_for(predicate: Callable[[], bool], child: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    """Poll `predicate`; a hang guard, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if child.poll() is not None:
            raise AssertionError(f"the child exited with {child.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            child.kill()
            raise AssertionError(f"not done within {timeout}s:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def test_a_consumer_killed_mid_batch_leaves_every_message_answered_once(streams: Streams, tmp_path: Path) -> None:
    model = built_path(tmp_path, 0)
    inputs = [features(1 + i % 3, i) for i in range(KILL_MESSAGES)]  # 1 to 3 rows each
    pipe = streams.client.pipeline(transaction=False)
    for i, x in enumerate(inputs):
        pipe.xadd(streams.stream, json_fields(x) if i % 2 else binary_fields(x))
    ids = [_text(entry_id) for entry_id in pipe.execute()]
    streams.source()  # the group, from the start of the backlog

    marker = tmp_path / "stalled"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start_child(streams, model, "first", first_log, "--stall-after", "8", "--stall-marker", str(marker))
    try:
        wait_for(marker.exists, first, first_log)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert streams.client.xlen(streams.sink) == 8 * KILL_BATCH  # killed mid-run: 8 batches answered...
    assert streams.source().lag().pending == KILL_BATCH  # ...and its batch in hand, not acknowledged

    second = start_child(streams, model, "second", second_log)
    try:
        second.wait(timeout=180)  # a hang guard: it exits once the group has answered everything
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, second_log.read_text()[-3000:]
    assert f"claimed={KILL_BATCH}," in second_log.read_text()  # the first's batch, taken over

    entries = streams.sink_entries()
    answered = [_text(e["source_id"]) for e in entries]
    assert len(answered) == len(set(answered)) == KILL_MESSAGES
    assert set(answered) == set(ids)
    assert streams.dead_entries() == []
    assert streams.source().lag() == Lag(pending=0, undelivered=0)
    expected = ort_run(session_of(model))(1, {"x": np.concatenate(inputs)})["probs"]
    offsets = dict(zip(ids, np.cumsum([0] + [len(x) for x in inputs]), strict=False))
    for entry, source_id in zip(entries, answered, strict=True):
        start = offsets[source_id]
        rows = json_outputs(entry)["probs"]
        np.testing.assert_allclose(rows, expected[start:start + len(rows)], rtol=1e-5, atol=1e-7)
