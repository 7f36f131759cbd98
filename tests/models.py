"""Small real models built in code for the suite (a few KB of ONNX or TorchScript)."""

import io
import zipfile

import numpy as np
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 9


def mlp_onnx(inputs: int = 8, outputs: int = 3, seed: int = 0, ir_version: int = IR_VERSION) -> bytes:
    """x[batch, inputs] → softmax(x·W + b)[batch, outputs]."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((inputs, outputs)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal(outputs).astype(np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "B"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", inputs])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", outputs])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="paddock-tests")
    model.ir_version = ir_version
    return model.SerializeToString()


def _matmul_onnx(weight: TensorProto, width: int, name: str) -> bytes:
    """y[batch, 2] = x[batch, width] · W."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = IR_VERSION
    return model.SerializeToString()


def external_data_onnx(location: str) -> bytes:
    """A model whose weight lives in an external file at `location`."""
    weight = numpy_helper.from_array(np.ones((4, 2), dtype=np.float32), "W")
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    for key, value in (("location", location), ("offset", "0"), ("length", "32")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    return _matmul_onnx(weight, 4, "ext")


def broken_onnx() -> bytes:
    """Parses as ONNX but onnxruntime refuses it: MatMul with mismatched inner dimensions."""
    return _matmul_onnx(numpy_helper.from_array(np.ones((5, 2), dtype=np.float32), "W"), 4, "broken")


def torchscript_linear() -> bytes:
    import torch

    torch.manual_seed(0)
    module = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.Sigmoid()))
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    return buffer.getvalue()


def torch_save_state_dict() -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(torch.nn.Linear(4, 2).state_dict(), buffer)
    return buffer.getvalue()


def plain_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "not a model")
    return buffer.getvalue()


TORCHSCRIPT_SIGNATURE = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
}


DATATYPES = {  # v2 name → ONNX element type
    "BOOL": TensorProto.BOOL, "UINT8": TensorProto.UINT8, "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32, "UINT64": TensorProto.UINT64, "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16, "INT32": TensorProto.INT32, "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16, "FP32": TensorProto.FLOAT, "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}


def identity_per_datatype() -> bytes:
    """One input per v2 datatype (`in_<TYPE>`, shape [batch, 2]), each echoed as `out_<TYPE>`."""
    nodes, inputs, outputs = [], [], []
    for name, elem in DATATYPES.items():
        nodes.append(helper.make_node("Identity", [f"in_{name}"], [f"out_{name}"]))
        inputs.append(helper.make_tensor_value_info(f"in_{name}", elem, ["batch", 2]))
        outputs.append(helper.make_tensor_value_info(f"out_{name}", elem, ["batch", 2]))
    graph = helper.make_graph(nodes, "identities", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = IR_VERSION
    return model.SerializeToString()


def slow_onnx(width: int = 1024, layers: int = 48) -> bytes:
    """x[batch, width] multiplied by the same width×width matrix `layers` times: about
    2·width²·layers FLOP per row (~100 MFLOP), so a 64-row batch keeps a CPU busy for a while."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array((rng.standard_normal((width, width)) / width).astype(np.float32), "W")
    nodes, previous = [], "x"
    for layer in range(layers):
        output = "y" if layer == layers - 1 else f"h{layer}"
        nodes.append(helper.make_node("MatMul", [previous, "W"], [output]))
        previous = output
    graph = helper.make_graph(
        nodes, "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = IR_VERSION
    return model.SerializeToString()


def picky_mlp_onnx(inputs: int = 8, outputs: int = 3, seed: int = 1, limit: float = 50.0) -> bytes:
    """Like mlp_onnx, but onnxruntime fails on any row holding a value above `limit` (a Gather
    index goes out of bounds): validation's random inputs pass, a poisoned request errors."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((inputs, outputs)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal(outputs).astype(np.float32), "B")
    table = numpy_helper.from_array(np.zeros((1, outputs), dtype=np.float32), "table")
    threshold = numpy_helper.from_array(np.array(limit, dtype=np.float32), "limit")
    seven = numpy_helper.from_array(np.array(7, dtype=np.int64), "seven")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "B"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["soft"], axis=-1),
         helper.make_node("ReduceMax", ["x"], ["peak"], axes=[1], keepdims=0),
         helper.make_node("Greater", ["peak", "limit"], ["over"]),
         helper.make_node("Cast", ["over"], ["flag"], to=TensorProto.INT64),
         helper.make_node("Mul", ["flag", "seven"], ["index"]),
         helper.make_node("Gather", ["table", "index"], ["extra"], axis=0),
         helper.make_node("Add", ["soft", "extra"], ["probs"])],
        "picky",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", inputs])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", outputs])],
        initializer=[weight, bias, table, threshold, seven],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="paddock-tests")
    model.ir_version = IR_VERSION
    return model.SerializeToString()


def slow_mlp_onnx(inputs: int = 8, outputs: int = 3, width: int = 1024, depth: int = 160, seed: int = 2) -> bytes:
    """The same signature as mlp_onnx, 160 chained 1024² MatMuls (~10 ms per request here): correct but slow."""
    rng = np.random.default_rng(seed)
    initializers = [
        numpy_helper.from_array(rng.standard_normal((inputs, width)).astype(np.float32), "W_in"),
        numpy_helper.from_array((rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32), "W_mid"),
        numpy_helper.from_array(rng.standard_normal((width, outputs)).astype(np.float32) / 30, "W_out"),
    ]
    nodes = [helper.make_node("MatMul", ["x", "W_in"], ["h0"])]
    for layer in range(depth):
        nodes.append(helper.make_node("MatMul", [f"h{layer}", "W_mid"], [f"h{layer + 1}"]))
    nodes += [helper.make_node("MatMul", [f"h{depth}", "W_out"], ["logits"]),
              helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)]
    graph = helper.make_graph(
        nodes, "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", inputs])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", outputs])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="paddock-tests")
    model.ir_version = IR_VERSION
    return model.SerializeToString()


def memory_hog_onnx(gib: int = 16) -> bytes:
    """A few hundred bytes that pass inspection, but whose run asks for `gib` GiB: a zero tensor
    whose shape is computed from the input's shape at run time (ConstantOfShape), so nothing
    short of running it knows. y[batch, 4] = x + sum(zeros[batch·gib·2^16, 4096]) (float32)."""
    rows = numpy_helper.from_array(np.array([gib << 16, 1024], dtype=np.int64), "scale")
    graph = helper.make_graph(
        [helper.make_node("Shape", ["x"], ["x_shape"]),
         helper.make_node("Mul", ["x_shape", "scale"], ["huge_shape"]),  # [batch·gib·2^16, 4·1024]
         helper.make_node("ConstantOfShape", ["huge_shape"], ["huge"],
                          value=numpy_helper.from_array(np.zeros(1, dtype=np.float32))),
         helper.make_node("ReduceSum", ["huge"], ["total"], keepdims=0),
         helper.make_node("Add", ["x", "total"], ["y"])],
        "hog",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[rows],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="paddock-tests")
    model.ir_version = IR_VERSION
    return model.SerializeToString()


def torchscript_memory_hog(gib: int = 16) -> bytes:
    """TorchScript y[batch, 4] = x + sum(zeros(batch·gib GiB of float32)): torch's allocator asks."""
    import torch

    class Hog(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.floats_per_row = gib << 28  # a constant of the scripted module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.zeros(x.shape[0] * self.floats_per_row).sum()

    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(Hog()), buffer)
    return buffer.getvalue()
