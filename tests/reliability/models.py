"""Variants of `make run`'s demo MLP (same signature: input[batch, 64] → probabilities[batch, 2])
built in code, for judging rollout gates on real traffic: healthy (other weights), slower per
row (deeper), heavier per row (wider), or failing on a trigger value."""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from registry.demo import DEMO_IR_VERSION

TRIGGER = 1000.0  # a request holding this value fails on the picky variant


def demo_variant(seed: int, *, hidden: int = 16, extra_layers: int = 0, picky: bool = False) -> bytes:
    """The demo MLP (64 → hidden → 2) with `extra_layers` more hidden×hidden Gemm+Relu layers (one
    shared matrix);
    `picky`: onnxruntime fails on any row holding a value above TRIGGER / 2 (a Gather index out
    of bounds), so validation's random inputs pass and a trigger request errors."""
    rng = np.random.default_rng(seed)

    def weights(name: str, rows: int, cols: int) -> list[TensorProto]:
        return [numpy_helper.from_array((rng.standard_normal((rows, cols)) * 0.1).astype(np.float32), f"w_{name}"),
                numpy_helper.from_array(np.zeros(cols, dtype=np.float32), f"b_{name}")]

    initializers = weights("in", 64, hidden) + weights("out", hidden, 2)
    nodes = [helper.make_node("Gemm", ["input", "w_in", "b_in"], ["h0"]),
             helper.make_node("Relu", ["h0"], ["r0"])]
    if extra_layers:
        initializers += weights("mid", hidden, hidden)  # one matrix for every extra layer: a few MB
    for layer in range(1, extra_layers + 1):
        nodes += [helper.make_node("Gemm", [f"r{layer - 1}", "w_mid", "b_mid"], [f"h{layer}"]),
                  helper.make_node("Relu", [f"h{layer}"], [f"r{layer}"])]
    nodes.append(helper.make_node("Gemm", [f"r{extra_layers}", "w_out", "b_out"], ["logits"]))
    if picky:
        initializers += [numpy_helper.from_array(np.zeros((1, 2), dtype=np.float32), "table"),
                         numpy_helper.from_array(np.array(TRIGGER / 2, dtype=np.float32), "limit"),
                         numpy_helper.from_array(np.array(7, dtype=np.int64), "seven")]
        nodes += [helper.make_node("ReduceMax", ["input"], ["peak"], axes=[1], keepdims=0),
                  helper.make_node("Greater", ["peak", "limit"], ["over"]),
                  helper.make_node("Cast", ["over"], ["flag"], to=TensorProto.INT64),
                  helper.make_node("Mul", ["flag", "seven"], ["index"]),
                  helper.make_node("Gather", ["table", "index"], ["extra"], axis=0),
                  helper.make_node("Add", ["logits", "extra"], ["checked"])]
    nodes.append(helper.make_node("Softmax", ["checked" if picky else "logits"], ["probabilities"], axis=-1))
    graph = helper.make_graph(
        nodes, "demo_variant",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="paddock-tests")
    model.ir_version = DEMO_IR_VERSION
    return model.SerializeToString()
