"""Runtimes behind one small interface: load an artifact, run named arrays, say which
execution provider answers."""

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from django.conf import settings


class Runtime(Protocol):
    """What the cache and the batcher use of a loaded model."""

    name: str  # the engine: "onnxruntime" or "torch"
    provider: str  # the execution provider that answers, e.g. CPUExecutionProvider, cuda
    version: str  # the engine's version
    instances: int  # copies the batcher's lanes run on side by side (1: the one session only)

    def run(self, inputs: dict[str, np.ndarray], instance: int | None = None) -> dict[str, np.ndarray]:
        """Named arrays in, named arrays out; `instance` picks a lane's copy (None: the full session)."""
        ...


class RuntimeLoadError(Exception):
    """The runtime refused the artifact; the message is the runtime's own."""


def cuda_wanted() -> bool:
    """Ask for CUDA only where a GPU is present (or PADDOCK_DEVICE=cuda says so)."""
    if settings.PADDOCK_DEVICE == "cpu":
        return False
    if settings.PADDOCK_DEVICE == "cuda":
        return True
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0")


def load_runtime(path: Path, *, fmt: str, signature: dict[str, Any], intra_op_threads: int = 0,
                 instances: int = 1, batchable: bool = True) -> Runtime:
    """`instances` (a deployment setting) applies to ONNX on the CPU with a batch axis."""
    if fmt == "onnx":
        from workers.runtimes.onnx import OnnxRuntime

        return OnnxRuntime(path, use_cuda=cuda_wanted(), intra_op_threads=intra_op_threads, instances=instances,
                           batchable=batchable)
    if fmt == "torchscript":
        from workers.runtimes.torchscript import TorchScriptRuntime

        return TorchScriptRuntime(path, signature=signature, use_cuda=cuda_wanted())
    raise RuntimeLoadError(f"no runtime for format '{fmt}'")
