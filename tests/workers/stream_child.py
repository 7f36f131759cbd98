"""A stream-scoring consumer in a process of its own, for the kill test in test_streams.py: a
StreamScorer loop over a real onnxruntime session, until the group has nothing left to answer.

With --stall-after N, the run after N batches writes --stall-marker and sleeps, so that the
test's SIGKILL lands mid-batch: messages read, not acknowledged, the sink partly written."""

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import redis

from workers.streams import RedisStreamSource, StreamScorer

ORT_DATATYPES = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(int64)": "INT64",
                 "tensor(int32)": "INT32", "tensor(bool)": "BOOL", "tensor(string)": "BYTES"}


def session_of(path: Path | str) -> onnxruntime.InferenceSession:
    """A one-thread CPU session: several of them share the test machine."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_signature(session: onnxruntime.InferenceSession) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The session's inputs and outputs as Paddock signatures (a named dimension is dynamic: -1)."""

    def tensors(args: list[Any]) -> list[dict[str, Any]]:
        return [{"name": arg.name, "datatype": ORT_DATATYPES[arg.type],
                 "shape": [d if isinstance(d, int) else -1 for d in arg.shape]} for arg in args]

    return tensors(session.get_inputs()), tensors(session.get_outputs())


def ort_run(session: onnxruntime.InferenceSession) -> Any:
    """run(version, inputs) for StreamScorer over one session."""
    names = [output.name for output in session.get_outputs()]

    def run(version: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, inputs), strict=True))

    return run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("redis-url", "stream", "group", "consumer", "sink", "dead-letter", "model"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--claim-every", type=int, default=1)
    parser.add_argument("--claim-idle-ms", type=int, default=200)
    parser.add_argument("--stall-after", type=int, default=0, help="batches before the run that stalls (0: never)")
    parser.add_argument("--stall-marker", default="")
    args = parser.parse_args(argv)

    session = session_of(args.model)
    signature = ort_signature(session)
    run = ort_run(session)
    batches = 0

    def stalling_run(version: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        nonlocal batches
        batches += 1
        if args.stall_after and batches > args.stall_after:
            Path(args.stall_marker).write_text(str(batches))
            time.sleep(3600)  # the test kills us here, this batch read and not acknowledged
        return run(version, inputs)

    client = redis.Redis.from_url(args.redis_url, socket_timeout=10)
    source = RedisStreamSource(client, stream=args.stream, group=args.group, consumer=args.consumer,
                               sink=args.sink, dead_letter=args.dead_letter)
    scorer = StreamScorer(source, signature_of=lambda version: signature, choose=lambda message: 1,
                          run=stalling_run, model="mlp", batch_size=args.batch_size,
                          claim_every=args.claim_every, claim_idle_ms=args.claim_idle_ms)
    # Until the group has answered everything, a dead consumer's pending messages included
    # (they are claimed once idle for claim_idle_ms).
    while scorer.step(block_ms=50) or source.lag().total:
        pass
    print(f"done: {scorer.stats}", flush=True)
    source.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
