"""The bench's PyTriton server: one ONNX model behind Triton's dynamic batcher, with the naive
server's onnxruntime settings (CPU provider, spinning off). --instances N binds N inference
functions (Triton's instance_group count), each with its own session of 1/N of the intra-op
threads, as a Paddock deployment with that many instances splits its threads; each instance runs
whole batches of its own, as Triton's instances do. Runs inside bench/.venv-pytriton; Triton
answers KServe v2 on --http-port.
Run: python bench/peers/pytriton_server.py MODEL.onnx NAME --http-port P --grpc-port G --metrics-port M"""

import argparse
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

DTYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
          "tensor(double)": np.float64}


def tensors(arguments: list[ort.NodeArg]) -> list[Tensor]:
    """Triton's tensors are declared without the batch axis; symbolic axes become -1."""
    return [Tensor(name=a.name, dtype=DTYPES[a.type], shape=tuple(d if isinstance(d, int) else -1 for d in a.shape[1:]))
            for a in arguments]


def open_session(model: str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def instance(session: ort.InferenceSession) -> Callable[..., dict[str, np.ndarray]]:
    """One model instance's inference function, batched by Triton."""
    outputs = [o.name for o in session.get_outputs()]

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(outputs, session.run(outputs, inputs), strict=True))

    return infer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("name")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--intra-op-threads", type=int, default=0)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--workspace", type=Path, default=None, help="a folder to create (default: a temporary one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    instances = max(args.instances, 1)
    # As a Paddock worker splits its threads (workers/runtimes/onnx.py): one instance keeps the
    # setting (0: onnxruntime's default), several share the machine's threads.
    threads = args.intra_op_threads if instances == 1 else max(
        1, (args.intra_op_threads or os.cpu_count() or 1) // instances)
    sessions = [open_session(args.model, threads) for _ in range(instances)]

    config = TritonConfig(http_address="127.0.0.1", http_port=args.http_port, grpc_address="127.0.0.1",
                          grpc_port=args.grpc_port, metrics_port=args.metrics_port, log_verbose=0)
    # SIGTERM (the bench's stop) as Ctrl-C: serve() then stops Triton and removes its workspace.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with Triton(config=config, workspace=args.workspace) as triton:
        # Triton's default queue delay (0): a batch is whatever has queued while the model ran.
        triton.bind(model_name=args.name, infer_func=[instance(session) for session in sessions],
                    inputs=tensors(sessions[0].get_inputs()), outputs=tensors(sessions[0].get_outputs()),
                    config=ModelConfig(max_batch_size=args.max_batch_size, batcher=DynamicBatcher()))
        triton.serve()


if __name__ == "__main__":
    main()
