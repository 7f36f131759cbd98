from pathlib import Path

import numpy as np
import onnxruntime as ort

from workers.runtimes import RuntimeLoadError


class OnnxRuntime:
    name = "onnxruntime"
    version = ort.__version__

    def __init__(self, path: Path, *, use_cuda: bool, intra_op_threads: int = 0) -> None:
        options = ort.SessionOptions()
        # Spinning threads starve their neighbours on small machines (REFERENCE-FIGURES.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.intra_op_num_threads = intra_op_threads
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if use_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            # A path, not bytes: onnxruntime resolves external data relative to the model file.
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
            raise RuntimeLoadError(str(exc)) from exc
        self.provider = self.session.get_providers()[0]
        self.output_names = [output.name for output in self.session.get_outputs()]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {name: _as_ort_strings(array) if array.dtype == object else array for name, array in inputs.items()}
        results = self.session.run(self.output_names, feed)
        return dict(zip(self.output_names, results, strict=True))


def _as_ort_strings(array: np.ndarray) -> np.ndarray:
    # onnxruntime's string tensors take str; it would str() a bytes object into "b'...'".
    converted = np.empty(array.shape, dtype=object)
    converted.ravel()[:] = [v.decode("utf-8", errors="surrogateescape") if isinstance(v, bytes) else v
                            for v in array.ravel()]
    return converted
