"""Load generation: the request bodies, and one closed-loop cell from wrk or bench/ws_load.py."""

import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import numpy as np

from bench import ROOT

DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}


class Target(TypedDict):
    """Where one path's cells send their load, as run_load's keyword arguments."""

    url: str
    body_file: Path
    token: NotRequired[str]
    header_length: NotRequired[int | None]


def json_body(row: dict[str, np.ndarray]) -> bytes:
    """A v2 request with the row as JSON tensors."""
    return json.dumps({"inputs": [
        {"name": name, "datatype": DATATYPES[a.dtype], "shape": list(a.shape), "data": a.ravel().tolist()}
        for name, a in row.items()]}).encode()


def binary_body(row: dict[str, np.ndarray]) -> tuple[bytes, int]:
    """A v2 request with the row as binary tensors after its JSON header, and the header's length."""
    header = json.dumps({"inputs": [
        {"name": name, "datatype": DATATYPES[a.dtype], "shape": list(a.shape),
         "parameters": {"binary_data_size": a.nbytes}} for name, a in row.items()],
        "parameters": {"binary_data_output": True}}).encode()
    return header + b"".join(np.ascontiguousarray(a).tobytes() for a in row.values()), len(header)


def run_load(path: str, url: str, *, clients: int, seconds: float, body_file: Path, token: str = "",
             header_length: int | None = None) -> dict[str, Any]:
    """One cell: `clients` closed-loop clients for `seconds`, each posting the body again as soon as
    it is answered; req/s, latency percentiles, errors and the load generator's CPU."""
    env = {**os.environ, "BENCH_BODY": str(body_file)}
    if token:
        env["BENCH_TOKEN"] = token
    if header_length is not None:
        env["BENCH_HEADER_LENGTH"] = str(header_length)
        env["BENCH_CONTENT_TYPE"] = "application/octet-stream"
    if path == "websocket":
        command = [sys.executable, str(ROOT / "bench" / "ws_load.py"), url, "--token", token, "--body",
                   str(body_file), "--clients", str(clients), "--seconds", str(seconds)]
    else:
        command = ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "60s", "-s",
                   str(ROOT / "bench" / "wrk" / "post.lua"), url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    match = re.search(r"BENCH_RESULT (\{.*\})", output.stdout)
    if match is None:
        raise RuntimeError(f"load generator failed: {output.stdout[-500:]} {output.stderr[-500:]}")
    result = json.loads(match.group(1))
    # wrk: from its start to its last response (see bench/wrk/post.lua); ws_load waits for every reply.
    seconds_run = (result.get("active_us") or result["duration_us"]) / 1e6
    return {
        "rps": result["requests"] / seconds_run if seconds_run else 0.0,
        "p50_ms": result["p50_us"] / 1000, "p95_ms": result["p95_us"] / 1000, "p99_ms": result["p99_us"] / 1000,
        "requests": result["requests"], "errors": result["errors"], "seconds": round(seconds_run, 3),
        "cpu_loadgen_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
    }
