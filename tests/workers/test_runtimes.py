"""The runtimes on small real models: what they compute, which provider answers, and what they
say when an artifact or an input is wrong (copies per instance: tests/serving/test_instances.py)."""

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from pytest_django.fixtures import Settings

from tests import models as built
from tests.workers.conftest import mlp_expected, model_file, rows
from workers.runtimes import RuntimeLoadError, cuda_wanted, load_runtime
from workers.runtimes.onnx import OnnxRuntime
from workers.runtimes.torchscript import TorchScriptRuntime

# torch 2.13 deprecates TorchScript, which is still a format Paddock serves.
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")

# -- ONNX ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_answers_a_batch_as_the_model_computes_it(mlp_path: Path, batch: int) -> None:
    runtime = OnnxRuntime(mlp_path, use_cuda=False)
    x = rows(batch, start=-2.0)
    outputs = runtime.run({"x": x})
    assert list(outputs) == ["probs"]
    assert outputs["probs"].dtype == np.float32 and outputs["probs"].shape == (batch, 3)
    np.testing.assert_allclose(outputs["probs"], mlp_expected(x), rtol=1e-5, atol=1e-6)


def test_onnx_rows_of_a_batch_answer_as_they_would_alone(mlp_path: Path) -> None:
    runtime = OnnxRuntime(mlp_path, use_cuda=False)
    x = rows(4, start=0.5)
    together = runtime.run({"x": x})["probs"]
    alone = np.concatenate([runtime.run({"x": x[i:i + 1]})["probs"] for i in range(4)])
    np.testing.assert_allclose(together, alone, rtol=1e-6, atol=1e-7)


def test_onnx_gives_back_every_datatype_it_is_given(tmp_path: Path) -> None:
    """Bytes go in as UTF-8 text (onnxruntime would str() a bytes object into "b'...'")."""
    runtime = OnnxRuntime(model_file(tmp_path, built.identity_per_datatype()), use_cuda=False)
    values = {
        "BOOL": np.array([[True, False]]), "UINT8": np.array([[0, 255]], np.uint8),
        "UINT16": np.array([[1, 65535]], np.uint16), "UINT32": np.array([[2, 2**32 - 1]], np.uint32),
        "UINT64": np.array([[3, 2**64 - 1]], np.uint64), "INT8": np.array([[-128, 127]], np.int8),
        "INT16": np.array([[-5, 5]], np.int16), "INT32": np.array([[-(2**31), 7]], np.int32),
        "INT64": np.array([[-(2**63), 9]], np.int64), "FP16": np.array([[0.5, -2.0]], np.float16),
        "FP32": np.array([[1.25, -3.5]], np.float32), "FP64": np.array([[1e300, -1e-300]], np.float64),
        "BYTES": np.array([[b"caf\xc3\xa9", b""]], dtype=object),
    }
    outputs = runtime.run({f"in_{name}": array for name, array in values.items()})
    for name, array in values.items():
        if name == "BYTES":
            assert outputs["out_BYTES"].tolist() == [["café", ""]]
        else:
            assert outputs[f"out_{name}"].dtype == array.dtype, name
            np.testing.assert_array_equal(outputs[f"out_{name}"], array)


def test_a_cpu_device_setting_loads_onnx_on_the_cpu_provider_alone(mlp_path: Path, settings: Settings) -> None:
    settings.PADDOCK_DEVICE = "cpu"
    assert cuda_wanted() is False
    runtime: Any = load_runtime(mlp_path, fmt="onnx", signature={})
    assert (runtime.name, runtime.version, runtime.provider) == ("onnxruntime", ort.__version__, "CPUExecutionProvider")
    assert runtime.session.get_providers() == ["CPUExecutionProvider"]
    settings.PADDOCK_DEVICE = "cuda"
    assert cuda_wanted() is True


def test_load_runtime_passes_instances_to_onnx(mlp_path: Path) -> None:
    runtime: Any = load_runtime(mlp_path, fmt="onnx", signature={}, intra_op_threads=2, instances=2)
    assert runtime.instances == 2 and len(runtime.copies) == 2
    unbatched: Any = load_runtime(mlp_path, fmt="onnx", signature={}, instances=2, batchable=False)
    assert unbatched.instances == 1 and unbatched.copies == []


def test_without_intra_op_threads_each_instance_gets_its_share_of_the_cores(mlp_path: Path) -> None:
    runtime = OnnxRuntime(mlp_path, use_cuda=False, instances=3)
    share = max(1, (os.cpu_count() or 1) // 3)
    assert [c.get_session_options().intra_op_num_threads for c in runtime.copies] == [share] * 3


def test_an_instance_beyond_the_copies_wraps_around(mlp_path: Path) -> None:
    runtime = OnnxRuntime(mlp_path, use_cuda=False, intra_op_threads=2, instances=2)
    x = rows(4, start=1.0)
    np.testing.assert_allclose(runtime.run({"x": x}, instance=5)["probs"], mlp_expected(x), rtol=1e-5, atol=1e-6)
    assert runtime.running == 0


@pytest.mark.parametrize("feed, message", [
    ({"z": np.ones((2, 8), np.float32)}, "Required inputs (['x']) are missing from input feed (['z'])."),
    ({"x": np.ones((2, 8), np.float64)}, "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Unexpected input data type. "
                                         "Actual: (tensor(double)) , expected: (tensor(float))"),
    ({"x": np.ones((2, 5), np.float32)}, "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for "
                                         "input: x for the following indices\n index: 1 Got: 5 Expected: 8\n "
                                         "Please fix either the inputs/outputs or the model."),
    ({"x": np.ones(8, np.float32)}, "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Invalid rank for input: x "
                                    "Got: 1 Expected: 2 Please fix either the inputs/outputs or the model."),
], ids=["missing", "dtype", "shape", "rank"])
def test_onnx_refuses_inputs_the_model_does_not_take_with_onnxruntime_s_message(
        mlp_path: Path, feed: dict[str, np.ndarray], message: str) -> None:
    runtime = OnnxRuntime(mlp_path, use_cuda=False)
    with pytest.raises(Exception) as refused:
        runtime.run(feed)
    assert str(refused.value) == message


def test_an_artifact_onnxruntime_refuses_raises_a_load_error_with_its_message(tmp_path: Path) -> None:
    path = model_file(tmp_path, built.broken_onnx())
    with pytest.raises(RuntimeLoadError) as refused:
        OnnxRuntime(path, use_cuda=False)
    assert str(refused.value) == (f"[ONNXRuntimeError] : 1 : FAIL : Load model from {path} failed:Node () Op (MatMul) "
                                  "[ShapeInferenceError] Incompatible dimensions for matrix multiplication")


def test_an_unknown_format_has_no_runtime(mlp_path: Path) -> None:
    with pytest.raises(RuntimeLoadError) as refused:
        load_runtime(mlp_path, fmt="tensorflow", signature={})
    assert str(refused.value) == "no runtime for format 'tensorflow'"


# -- TorchScript ---------------------------------------------------------------------------------

SIGNATURE = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
             "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]}


def linear_file(folder: Path) -> Path:
    """y = x·Wᵀ + b with known weights, traced."""
    linear = torch.nn.Linear(4, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, -1.0]]))
        linear.bias.copy_(torch.tensor([0.5, -1.0]))
    path = folder / "linear.pt"
    torch.jit.save(torch.jit.trace(linear, torch.zeros(1, 4)), str(path))
    return path


class TwoOutputs(torch.nn.Module):
    def forward(self, x: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * 2.0, (k + 1).sum(dim=1)


@pytest.mark.parametrize("batch", [1, 4])
def test_torchscript_answers_a_batch_as_the_module_computes_it(tmp_path: Path, batch: int) -> None:
    runtime = TorchScriptRuntime(linear_file(tmp_path), signature=SIGNATURE, use_cuda=False)
    x = np.arange(batch * 4, dtype=np.float32).reshape(batch, 4)
    y = runtime.run({"x": x})["y"]
    weight = np.array([[1, 2, 3, 4], [0, 1, 0, -1]], np.float32)
    assert y.dtype == np.float32 and y.shape == (batch, 2)
    np.testing.assert_allclose(y, x @ weight.T + np.array([0.5, -1.0], np.float32), rtol=1e-6)
    assert (runtime.name, runtime.version, runtime.provider) == ("torch", torch.__version__, "cpu")


def test_torchscript_takes_arrays_as_the_wire_gives_them(tmp_path: Path) -> None:
    """Read-only (np.frombuffer over the request's bytes) or not contiguous."""
    runtime = TorchScriptRuntime(linear_file(tmp_path), signature=SIGNATURE, use_cuda=False)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    expected = runtime.run({"x": x.copy()})["y"]
    read_only = np.frombuffer(x.tobytes(), np.float32).reshape(2, 4)
    np.testing.assert_array_equal(runtime.run({"x": read_only})["y"], expected)
    np.testing.assert_array_equal(runtime.run({"x": np.asfortranarray(x)})["y"], expected)


def test_torchscript_feeds_inputs_and_names_outputs_in_the_signature_s_order(tmp_path: Path) -> None:
    path = tmp_path / "two.pt"
    torch.jit.save(torch.jit.script(TwoOutputs()), str(path))
    signature = {"inputs": [{"name": "x"}, {"name": "k"}], "outputs": [{"name": "double"}, {"name": "total"}]}
    runtime = TorchScriptRuntime(path, signature=signature, use_cuda=False)
    outputs = runtime.run({"k": np.array([[1, 2], [3, 4]], np.int64), "x": np.ones((2, 3), np.float32)})
    assert list(outputs) == ["double", "total"]
    assert outputs["double"].dtype == np.float32 and outputs["double"].tolist() == [[2.0] * 3] * 2
    assert outputs["total"].dtype == np.int64 and outputs["total"].tolist() == [5, 9]


def test_torchscript_refuses_a_module_that_returns_other_outputs_than_declared(tmp_path: Path) -> None:
    path = tmp_path / "two.pt"
    torch.jit.save(torch.jit.script(TwoOutputs()), str(path))
    signature = {"inputs": [{"name": "x"}, {"name": "k"}], "outputs": [{"name": "only"}]}
    runtime = TorchScriptRuntime(path, signature=signature, use_cuda=False)
    with pytest.raises(RuntimeLoadError) as refused:
        runtime.run({"x": np.ones((1, 3), np.float32), "k": np.ones((1, 2), np.int64)})
    assert str(refused.value) == "the module returned 2 output(s) but the signature declares 1"


@pytest.mark.parametrize("x, last_line", [
    (np.ones((3, 5), np.float32), "RuntimeError: mat1 and mat2 shapes cannot be multiplied (3x5 and 4x2)"),
    (np.ones((3, 4), np.float64), "RuntimeError: mat1 and mat2 must have the same dtype, but got Double and Float"),
], ids=["shape", "dtype"])
def test_torchscript_refuses_inputs_the_module_does_not_take_with_torch_s_message(
        tmp_path: Path, x: np.ndarray, last_line: str) -> None:
    runtime = TorchScriptRuntime(linear_file(tmp_path), signature=SIGNATURE, use_cuda=False)
    with pytest.raises(RuntimeError) as refused:
        runtime.run({"x": x})
    assert str(refused.value).splitlines()[-1] == last_line


def test_an_archive_that_is_not_torchscript_raises_a_load_error_with_torch_s_message(mlp_path: Path) -> None:
    with pytest.raises(RuntimeLoadError) as refused:
        TorchScriptRuntime(mlp_path, signature=SIGNATURE, use_cuda=False)
    assert str(refused.value).startswith(
        "PytorchStreamReader failed reading zip archive: failed finding central directory.")


def test_load_runtime_loads_torchscript_with_its_signature(tmp_path: Path) -> None:
    runtime = load_runtime(linear_file(tmp_path), fmt="torchscript", signature=SIGNATURE, instances=4)
    assert (runtime.provider, runtime.instances) == ("cpu", 1)  # instances are for ONNX only
    assert runtime.run({"x": np.zeros((1, 4), np.float32)})["y"].tolist() == [[0.5, -1.0]]
