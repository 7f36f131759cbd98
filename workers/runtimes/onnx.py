"""ONNX models, run by onnxruntime (the CUDA provider where a GPU is present, the CPU otherwise)."""

import os
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

from workers.runtimes import RuntimeLoadError


class OnnxRuntime:
    """One onnxruntime session; with `instances` > 1 on the CPU, also that many copies of
    1/instances of the intra-op threads, one per batcher lane (Triton's instance_group): each
    lane runs whole batches on its own copy, side by side with the others, so no run waits at a
    barrier for a thread that the machine's other processes preempted, and one lane's Redis round
    trip and Python work overlap the others' compute (workers/batcher.py). On the 2-core bench
    machine two 1-thread copies ran M2 5-27% and M3 3-53% faster than one 2-thread session at 16
    rows (docs/benchmarks.md). A batch of fewer rows than copies, while no other copy runs, goes
    to the full session, which is faster for one row (M2 5 against 8 ms). The cost is memory:
    instances + 1 copies of the weights."""

    name = "onnxruntime"
    version = ort.__version__

    def __init__(self, path: Path, *, use_cuda: bool, intra_op_threads: int = 0, instances: int = 1,
                 batchable: bool = True) -> None:
        providers = ["CPUExecutionProvider"]
        if use_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = _session(path, providers, intra_op_threads)
        self.provider = self.session.get_providers()[0]
        self.output_names = [output.name for output in self.session.get_outputs()]
        # Copies only where batches can be told apart by rows (a batch axis) and on the CPU (a
        # GPU runs one stream).
        self.instances = instances if batchable and self.provider == "CPUExecutionProvider" else 1
        self.copies: list[ort.InferenceSession] = []
        if self.instances > 1:
            threads = max(1, (intra_op_threads or os.cpu_count() or 1) // self.instances)
            self.copies = [_session(path, providers, threads) for _ in range(self.instances)]
        self.running = 0  # runs in progress on the copies
        self.lock = threading.Lock()

    def run(self, inputs: dict[str, np.ndarray], instance: int | None = None) -> dict[str, np.ndarray]:
        """Run on the full session, or with `instance` on that copy (any index: modulo)."""
        feed = {name: _as_ort_strings(array) if array.dtype == object else array for name, array in inputs.items()}
        if instance is None or not self.copies:
            return self._run(self.session, feed)
        rows = len(next(iter(feed.values()))) if feed else 0
        with self.lock:
            alone = self.running == 0
            self.running += 1
        try:
            session = self.session if alone and rows < self.instances else self.copies[instance % self.instances]
            return self._run(session, feed)
        finally:
            with self.lock:
                self.running -= 1

    def _run(self, session: ort.InferenceSession, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, session.run(self.output_names, feed), strict=True))


def _session(path: Path, providers: list[str], threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # Spinning threads starve their neighbours on small machines (REFERENCE-FIGURES.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    try:
        # A path, not bytes: onnxruntime resolves external data relative to the model file.
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
        raise RuntimeLoadError(str(exc)) from exc


def _as_ort_strings(array: np.ndarray) -> np.ndarray:
    # onnxruntime's string tensors take str; it would str() a bytes object into "b'...'".
    converted = np.empty(array.shape, dtype=object)
    converted.ravel()[:] = [v.decode("utf-8", errors="surrogateescape") if isinstance(v, bytes) else v
                            for v in array.ravel()]
    return converted
