"""The demo model that `make run` registers: a small MLP built in code with onnx.helper
(64 inputs → 16 → 2 classes, fixed seeded weights), so nothing is downloaded."""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

DEMO_MODEL_NAME = "demo-mlp"
# onnxruntime 1.20+ loads IR 10; older onnx writers default to newer IRs, so pin it.
DEMO_IR_VERSION = 9


def build_demo_onnx(seed: int = 7, hidden: int = 16) -> bytes:
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.standard_normal((64, hidden)).astype(np.float32) * 0.1, "w1")
    b1 = numpy_helper.from_array(np.zeros(hidden, dtype=np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((hidden, 2)).astype(np.float32) * 0.1, "w2")
    b2 = numpy_helper.from_array(np.zeros(2, dtype=np.float32), "b2")
    nodes = [
        helper.make_node("Gemm", ["input", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["h_relu"]),
        helper.make_node("Gemm", ["h_relu", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "demo_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        initializer=[w1, b1, w2, b2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="paddock-demo")
    model.ir_version = DEMO_IR_VERSION
    return model.SerializeToString()
