"""A deployment's `instances`: copies of an ONNX model, one per batcher lane, each running whole
batches (the lanes are in tests/serving/test_batching.py, the worker serving them for real in
tests/integration/test_serving.py)."""

import threading
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from tests import models as built
from workers.runtimes.onnx import OnnxRuntime


class Recording:
    """Wraps a session and records the rows of each run."""

    def __init__(self, session: ort.InferenceSession, calls: list[tuple[str, int]], label: str) -> None:
        self.session, self.calls, self.label = session, calls, label

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> Any:
        self.calls.append((self.label, len(feed["x"])))
        return self.session.run(names, feed)


def _runtime(tmp_path: Path, instances: int, batchable: bool = True) -> tuple[OnnxRuntime, list[tuple[str, int]]]:
    path = tmp_path / "mlp.onnx"
    path.write_bytes(built.mlp_onnx(inputs=8, outputs=3, seed=4))
    runtime = OnnxRuntime(path, use_cuda=False, intra_op_threads=2, instances=instances, batchable=batchable)
    calls: list[tuple[str, int]] = []
    runtime.session = Recording(runtime.session, calls, "full")
    runtime.copies = [Recording(c, calls, f"copy{i}") for i, c in enumerate(runtime.copies)]
    return runtime, calls


def test_an_instance_runs_the_whole_batch_on_its_own_copy(tmp_path: Path) -> None:
    runtime, calls = _runtime(tmp_path, instances=3)
    x = np.random.default_rng(0).standard_normal((7, 8)).astype(np.float32)
    expected = ort.InferenceSession(str(tmp_path / "mlp.onnx")).run(None, {"x": x})[0]
    for instance in (2, 0, 1):
        np.testing.assert_allclose(runtime.run({"x": x}, instance=instance)["probs"], expected, rtol=1e-6, atol=1e-7)
    assert calls == [("copy2", 7), ("copy0", 7), ("copy1", 7)]
    assert runtime.instances == 3 and runtime.provider == "CPUExecutionProvider"


def test_without_an_instance_the_full_session_runs(tmp_path: Path) -> None:
    runtime, calls = _runtime(tmp_path, instances=2)
    runtime.run({"x": np.ones((6, 8), np.float32)})
    assert calls == [("full", 6)]


def test_fewer_rows_than_instances_run_on_the_full_session_while_no_copy_runs(tmp_path: Path) -> None:
    runtime, calls = _runtime(tmp_path, instances=2)
    x = np.ones((1, 8), np.float32)
    expected = ort.InferenceSession(str(tmp_path / "mlp.onnx")).run(None, {"x": x})[0]
    np.testing.assert_allclose(runtime.run({"x": x}, instance=1)["probs"], expected, rtol=1e-6, atol=1e-7)
    assert calls == [("full", 1)]


def test_fewer_rows_than_instances_keep_to_their_copy_while_another_runs(tmp_path: Path) -> None:
    """The full session's threads would compete with the running copy's: the row waits for none."""
    runtime, calls = _runtime(tmp_path, instances=2)
    started, release = threading.Event(), threading.Event()
    copy0 = runtime.copies[0]

    class Blocking:
        def run(self, names: list[str], feed: dict[str, np.ndarray]) -> Any:
            started.set()
            assert release.wait(5)
            return copy0.run(names, feed)

    runtime.copies[0] = Blocking()
    busy = threading.Thread(target=runtime.run, args=({"x": np.ones((4, 8), np.float32)},), kwargs={"instance": 0})
    busy.start()
    try:
        assert started.wait(5)
        runtime.run({"x": np.ones((1, 8), np.float32)}, instance=1)
    finally:
        release.set()
        busy.join(5)
    assert calls == [("copy1", 1), ("copy0", 4)]
    assert runtime.running == 0


def test_without_a_batch_axis_there_are_no_copies(tmp_path: Path) -> None:
    runtime, calls = _runtime(tmp_path, instances=4, batchable=False)
    runtime.run({"x": np.ones((5, 8), np.float32)}, instance=3)
    assert runtime.instances == 1 and runtime.copies == [] and calls == [("full", 5)]


def test_each_instance_gets_its_share_of_the_threads(tmp_path: Path) -> None:
    path = tmp_path / "mlp.onnx"
    path.write_bytes(built.mlp_onnx())
    runtime = OnnxRuntime(path, use_cuda=False, intra_op_threads=4, instances=2)
    assert [c.get_session_options().intra_op_num_threads for c in runtime.copies] == [2, 2]
    assert runtime.session.get_session_options().intra_op_num_threads == 4
