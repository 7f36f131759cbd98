"""The peers of `make bench PEERS=mlserver,pytriton`: Seldon MLServer (adaptive batching, the
bench's onnxruntime runtime in mlserver_onnx.py) and PyTriton (Triton's dynamic batcher,
pytriton_server.py). Each lives in a virtualenv of its own under bench/, which the bench creates
and installs on first use and reuses while its stamp names the same requirements; each is started
once per model beside the naive server and loaded with the naive server's v2 JSON body."""

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PEERS_DIR = Path(__file__).resolve().parent
BENCH = PEERS_DIR.parent
STAMP = ".bench-stamp"
PACKAGES = {"mlserver": "mlserver", "pytriton": "nvidia-pytriton"}  # whose version the report names
NAMES = tuple(PACKAGES)
MAX_BATCH_SIZE = 64
MLSERVER_MAX_BATCH_TIME_S = 0.002


class PeerUnavailable(RuntimeError):
    """A peer that cannot be installed or started; the bench carries on without it."""


@dataclass
class Launch:
    command: list[str]
    env: dict[str, str]
    url: str  # the model's v2 infer endpoint
    server_url: str  # GET {server_url}/v2 answers the server's name and version
    metrics_url: str | None = None  # Prometheus text with executed-batch counters, where the peer has them


def requirements(name: str) -> list[str]:
    import onnxruntime

    ort = f"onnxruntime=={onnxruntime.__version__}"  # the main venv's, so every side runs the same kernels
    if name == "mlserver":
        return ["mlserver==1.7.1", ort, "numpy"]
    if name == "pytriton":
        return ["nvidia-pytriton==0.7.0", ort, "numpy==1.26.4"]  # numpy 1.26.4: the pairing that was measured
    raise ValueError(f"unknown peer {name!r}: mlserver or pytriton")


def settings(name: str) -> dict[str, Any]:
    """What the report records of each peer's configuration."""
    if name == "mlserver":
        return {"parallel_workers": 0, "debug": False, "max_batch_size": MAX_BATCH_SIZE,
                "max_batch_time_s": MLSERVER_MAX_BATCH_TIME_S, "runtime": "bench/peers/mlserver_onnx.py"}
    return {"max_batch_size": MAX_BATCH_SIZE, "max_queue_delay_microseconds": 0,
            "instances": "as Paddock's deployment",
            "runtime": "bench/peers/pytriton_server.py"}


def venv_dir(name: str) -> Path:
    return BENCH / f".venv-{name}"


def install(name: str, log: Callable[[str], None]) -> dict[str, Any]:
    """The peer's virtualenv, created and installed unless its stamp already names the same
    requirements; returns what the report records (versions, install time, size)."""
    wanted = requirements(name)
    folder = venv_dir(name)
    python = folder / "bin" / "python"
    stamp = folder / STAMP
    if python.exists() and stamp.exists():
        recorded = json.loads(stamp.read_text())
        if recorded.get("requirements") == wanted:
            log(f"{name}: reusing {folder} (installed in {recorded['install_s']:.0f} s)")
            return {**recorded, "reused": True, "venv_mb": _size_mb(folder)}
    shutil.rmtree(folder, ignore_errors=True)
    log(f"{name}: creating {folder} and installing {' '.join(wanted)}")
    started = time.monotonic()
    created = subprocess.run([sys.executable, "-m", "venv", str(folder)], capture_output=True, text=True)
    if created.returncode:
        raise PeerUnavailable(f"python -m venv failed: {created.stderr.strip()[-500:]}")
    install_log = folder / "install.log"
    with install_log.open("w") as sink:
        pip = subprocess.Popen([str(python), "-m", "pip", "install", "--progress-bar", "off", *wanted],
                               stdout=subprocess.PIPE, stderr=sink, text=True)
        assert pip.stdout is not None
        collected = 0
        for line in pip.stdout:  # progress: one line per package pip collects, the rest to install.log
            sink.write(line)
            if line.startswith("Collecting "):
                collected += 1
                log(f"{name}: pip collecting {line.split()[1]} ({collected})")
            elif line.startswith("Installing collected packages"):
                log(f"{name}: pip installing {collected} packages")
        pip.wait()
    if pip.returncode:
        tail = [line for line in install_log.read_text().strip().splitlines()
                if not line.startswith("WARNING: Location")][-5:]  # pip's notes on this machine's local indexes
        raise PeerUnavailable(f"pip install failed (exit {pip.returncode}, see {install_log}): {' / '.join(tail)}")
    probe = subprocess.run([str(python), "-c", (
        "import importlib.metadata as m, json, sysconfig; print(json.dumps({'packages': {p: m.version(p) for p in "
        f"{[r.split('==')[0] for r in wanted]!r}}}, 'libdir': sysconfig.get_config_var('LIBDIR')}}))")],
        capture_output=True, text=True)
    if probe.returncode:
        raise PeerUnavailable(f"installed, but its versions cannot be read: {probe.stderr.strip()[-500:]}")
    found = json.loads(probe.stdout)
    recorded = {"version": found["packages"][PACKAGES[name]], "requirements": wanted, **found,
                "install_s": round(time.monotonic() - started, 1)}
    stamp.write_text(json.dumps(recorded, indent=1))
    log(f"{name}: installed in {recorded['install_s']:.0f} s ({_size_mb(folder):.0f} MB)")
    return {**recorded, "reused": False, "venv_mb": _size_mb(folder)}


def launch(name: str, installed: dict[str, Any], *, workdir: Path, artifact: Path, model: str, intra_op_threads: int,
           ports: tuple[int, int, int], instances: int = 1) -> Launch:
    """The command that serves `artifact` as `model` on 127.0.0.1 (HTTP, gRPC and metrics ports);
    PyTriton with `instances` model instances (MLServer has no such setting with
    parallel_workers 0)."""
    http, grpc, metrics = ports
    artifact = artifact.resolve()  # MLServer reads a relative uri from the model's settings folder
    bindir = venv_dir(name) / "bin"
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH")}
    url = f"http://127.0.0.1:{http}"
    if name == "mlserver":
        folder = workdir / f"mlserver-{model}"
        (folder / model).mkdir(parents=True, exist_ok=True)
        (folder / "settings.json").write_text(json.dumps({
            "debug": False, "parallel_workers": 0, "host": "127.0.0.1", "http_port": http, "grpc_port": grpc,
            "metrics_port": metrics, "environments_dir": str(folder / ".envs"), "metrics_dir": str(folder / ".metrics"),
        }))
        (folder / model / "model-settings.json").write_text(json.dumps({
            "name": model, "implementation": "mlserver_onnx.OnnxModel", "max_batch_size": MAX_BATCH_SIZE,
            "max_batch_time": MLSERVER_MAX_BATCH_TIME_S,
            "parameters": {"uri": str(artifact), "extra": {"intra_op_threads": intra_op_threads}},
        }))
        env["PYTHONPATH"] = str(PEERS_DIR)  # where MLServer imports mlserver_onnx from
        return Launch([str(bindir / "mlserver"), "start", str(folder)], env, f"{url}/v2/models/{model}/infer", url)
    # Triton's Python backend stub links libpython3.x.so.1.0: without this it may find the system's
    # (Debian's 3.11.2) beside this interpreter's standard library, and die on the first import
    # that differs between the two patch releases.
    if installed.get("libdir"):
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [installed["libdir"], env.get("LD_LIBRARY_PATH")]))
    command = [str(bindir / "python"), str(PEERS_DIR / "pytriton_server.py"), str(artifact), model,
               "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
               "--intra-op-threads", str(intra_op_threads), "--max-batch-size", str(MAX_BATCH_SIZE),
               "--instances", str(instances), "--workspace", str(workdir / f"pytriton-{model}")]
    return Launch(command, env, f"{url}/v2/models/{model}/infer", url, f"http://127.0.0.1:{metrics}/metrics")


def batch_counters(metrics_text: str, model: str, batches_metric: str, rows_metric: str) -> tuple[float, float]:
    """(batches, rows) executed for `model`, summed from a Prometheus page: Paddock's
    paddock_inference_batches_total / _batch_rows_total, Triton's nv_inference_exec_count /
    nv_inference_count."""
    batches = rows = 0.0
    for line in metrics_text.splitlines():
        if f'model="{model}"' in line:
            if line.startswith(batches_metric):
                batches += float(line.rsplit(" ", 1)[1])
            elif line.startswith(rows_metric):
                rows += float(line.rsplit(" ", 1)[1])
    return batches, rows


def _size_mb(folder: Path) -> float:
    total = 0
    for directory, _, files in os.walk(folder):
        for file in files:
            path = Path(directory) / file
            if not path.is_symlink():
                total += path.stat().st_size
    return round(total / 2**20, 1)
