import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from workers.runtimes import RuntimeLoadError


class OnnxRuntime:
    """One onnxruntime session; with `instances` > 1 on the CPU, also that many single-purpose
    copies that run a batch's rows side by side (Triton's instance_group count). Each copy gets
    1/instances of the intra-op threads, so no run waits at a barrier for a thread that the
    machine's other processes preempted: on the 2-core bench machine two 1-thread copies ran
    M2 5-27% and M3 3-53% faster than one 2-thread session at 16 rows (docs/benchmarks.md). A run
    of fewer rows than copies goes to the full session, which is faster for one row (M2 5 against
    8 ms). The cost is memory: instances + 1 copies of the weights."""

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
        # Copies only where rows can be split (a batch axis) and on the CPU (a GPU runs one stream).
        self.instances = instances if batchable and self.provider == "CPUExecutionProvider" else 1
        self.copies: list[ort.InferenceSession] = []
        self.pool: ThreadPoolExecutor | None = None
        if self.instances > 1:
            threads = max(1, (intra_op_threads or os.cpu_count() or 1) // self.instances)
            self.copies = [_session(path, providers, threads) for _ in range(self.instances)]
            self.pool = ThreadPoolExecutor(self.instances - 1, thread_name_prefix="paddock-instance")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {name: _as_ort_strings(array) if array.dtype == object else array for name, array in inputs.items()}
        rows = len(next(iter(feed.values()))) if feed else 0
        if self.pool is None or rows < self.instances:
            results = self.session.run(self.output_names, feed)
            return dict(zip(self.output_names, results, strict=True))
        # Contiguous row ranges, one per copy; the calling thread runs the first itself.
        bounds = np.linspace(0, rows, self.instances + 1).astype(int)
        parts = [{name: array[start:stop] for name, array in feed.items()}
                 for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]
        pending = [self.pool.submit(copy.run, self.output_names, part)
                   for copy, part in zip(self.copies[1:], parts[1:], strict=True)]
        first = self.copies[0].run(self.output_names, parts[0])
        results = [first, *(future.result() for future in pending)]
        return {name: np.concatenate([result[index] for result in results])
                for index, name in enumerate(self.output_names)}


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
