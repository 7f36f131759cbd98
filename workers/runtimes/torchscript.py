"""TorchScript models, run by torch (never unpickled: torch.jit.load reads its own format)."""

from pathlib import Path
from typing import Any

import numpy as np
import torch

from workers.runtimes import RuntimeLoadError


class TorchScriptRuntime:
    """A TorchScript module on the CPU or the GPU; one copy (instances is an ONNX setting)."""

    name = "torch"
    version = str(torch.__version__)
    instances = 1

    def __init__(self, path: Path, *, signature: dict[str, Any], use_cuda: bool) -> None:
        self.device = torch.device("cuda" if use_cuda and torch.cuda.is_available() else "cpu")
        try:
            # torch.jit.load reads TorchScript's own format; it does not run Python's unpickler
            # on arbitrary classes.
            self.module = torch.jit.load(str(path), map_location=self.device)
        except Exception as exc:  # noqa: BLE001
            raise RuntimeLoadError(str(exc)) from exc
        self.module.eval()
        self.provider = "cuda" if self.device.type == "cuda" else "cpu"
        self.input_names = [tensor["name"] for tensor in signature["inputs"]]
        self.output_names = [tensor["name"] for tensor in signature["outputs"]]

    def run(self, inputs: dict[str, np.ndarray], instance: int | None = None) -> dict[str, np.ndarray]:
        """Run the module on the inputs in signature order; name its outputs by the signature."""
        with torch.inference_mode():
            args = [torch.from_numpy(_writable(inputs[name])).to(self.device) for name in self.input_names]
            result = self.module(*args)
        tensors = list(result) if isinstance(result, (tuple, list)) else [result]
        if len(tensors) != len(self.output_names):
            raise RuntimeLoadError(
                f"the module returned {len(tensors)} output(s) but the signature declares {len(self.output_names)}"
            )
        return {name: tensor.detach().cpu().numpy() for name, tensor in zip(self.output_names, tensors, strict=True)}


def _writable(array: np.ndarray) -> np.ndarray:
    """A contiguous array torch may share: arrays read from the wire are read-only views of the
    request's bytes, which torch warns about and a module writing in place would change."""
    array = np.ascontiguousarray(array)
    return array if array.flags.writeable else array.copy()
