"""Cells and rounds: every model's deployments, servers and load cells, interleaved in rounds."""

import argparse
import functools
import os
import platform
import shutil
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench import ROOT, peers
from bench.load import Target, binary_body, json_body, run_load
from bench.offline import measure_offline
from bench.raw import TUNED_BATCH, batch_size_for, instances_for, raw_limit, raw_split
from bench.servers import Paddock, Stack, cpu_seconds, post_succeeds, server_version, start_naive, start_peer

PATHS = ["naive", "rest_json", "rest_binary", "websocket", "shadow"]
# "shadow": REST binary to a twin deployment of M1 that mirrors 100% of its requests to a second
# version after each answer; its live p50 is compared with rest_binary's (issue: within 10%).
SHADOW_MODELS = {"M1"}
# Cells last long enough to see about this many requests at the raw limit (slow models get longer cells).
CELL_REQUESTS = 200
CACHE = ROOT / "bench" / ".cache"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """The whole run: the raw limits, then each model's cells; every cell in the report, no summary yet."""
    from bench.models import MODELS, artifact

    workdir = Path(tempfile.mkdtemp(prefix="paddock-bench-"))
    stack = Stack(workdir)
    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {"quick": args.quick, "models": args.models, "rounds": args.rounds, "seconds": args.seconds,
                   "clients": args.clients, "web_processes": args.web_processes, "workers": 1,
                   "intra_op_threads": args.intra_op_threads, "max_batch_size": 64, "max_queue_delay_ms": 0,
                   "peers": args.peers},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "raw": {}, "cells": [], "peers": {},
    }
    import onnxruntime

    report["machine"]["onnxruntime"] = onnxruntime.__version__
    installed: dict[str, dict[str, Any]] = {}
    for peer in args.peers:
        report["peers"][peer] = {"settings": peers.settings(peer)}
        try:
            installed[peer] = peers.install(peer, log)
            report["peers"][peer].update(installed[peer])
        except (peers.PeerUnavailable, OSError) as error:
            log(f"{peer}: not installed, measuring without it: {error}")
            report["peers"][peer]["error"] = f"install: {error}"
    try:
        artifacts = {name: artifact(name, CACHE) for name in args.models}
        rows = {name: MODELS[name].row() for name in args.models}
        for name in args.models:
            log(f"raw onnxruntime limit for {name}")
            report["raw"][name] = raw_limit(artifacts[name], rows[name], args.intra_op_threads, args.raw_seconds)
        paddock = Paddock(stack, args)
        log(f"starting Paddock: {args.web_processes} web process(es), 1 worker, its own Redis")
        paddock.start()
        for name in args.models:
            _measure_model(name, artifacts[name], rows[name], args=args, report=report, stack=stack,
                           paddock=paddock, installed=installed)
    except BaseException:
        log(f"failed; the processes' logs are kept in {workdir}")
        raise
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    finally:
        stack.stop_all()
    return report


def _measure_model(name: str, artifact: Path, row: dict[str, np.ndarray], *, args: argparse.Namespace,
                   report: dict[str, Any], stack: Stack, paddock: Paddock,
                   installed: dict[str, dict[str, Any]]) -> None:
    """One model: its deployments, the naive server and the peers beside them, then its rounds of cells."""
    slug = name.lower()
    workdir = stack.workdir
    instances, seconds, shadowed = _deploy(name, artifact, row, args=args, report=report, paddock=paddock)
    json_file, binary_file = workdir / f"{slug}.json", workdir / f"{slug}.bin"
    json_file.write_bytes(json_body(row))
    binary, header_length = binary_body(row)
    binary_file.write_bytes(binary)
    naive_body = json_file.read_bytes()
    naive_url = start_naive(stack, artifact, slug, args.intra_op_threads, naive_body)
    live = _start_peers(name, artifact, naive_body, instances, args=args, report=report, stack=stack,
                        installed=installed)
    targets: dict[str, Target] = {
        "naive": Target(url=naive_url, body_file=json_file),
        "rest_json": Target(url=f"{paddock.base}/v2/models/{slug}/infer", body_file=json_file,
                            token=paddock.token),
        "rest_binary": Target(url=f"{paddock.base}/v2/models/{slug}/infer", body_file=binary_file,
                              token=paddock.token, header_length=header_length),
        "websocket": Target(url=f"ws://127.0.0.1:{paddock.port}/ws/v2/models/{slug}/infer",
                            body_file=json_file, token=paddock.token),
        **{peer: Target(url=launch.url, body_file=json_file) for peer, launch in live.items()},
    }
    if shadowed:
        targets["shadow"] = Target(url=f"{paddock.base}/v2/models/{slug}-shadowed/infer", body_file=binary_file,
                                   token=paddock.token, header_length=header_length)
    # After each cell one JSON request on the same server, answered only once the cell's
    # backlog is (a closed-loop cell at 64 clients leaves up to 64 requests queued: seconds
    # of M3 work that would otherwise run inside the next path's cell).
    rest_json = f"{paddock.base}/v2/models/{slug}/infer"
    drains = {"naive": (naive_url, ""), "rest_json": (rest_json, paddock.token),
              "rest_binary": (rest_json, paddock.token), "websocket": (rest_json, paddock.token),
              "shadow": (f"{paddock.base}/v2/models/{slug}-shadowed/infer", paddock.token),
              **{peer: (launch.url, "") for peer, launch in live.items()}}
    for path, target in targets.items():  # warm up every path once
        run_load(path, clients=4, seconds=min(1.0, args.seconds), **target)
        _drain(path, *drains[path], naive_body)
    # Peers' cells interleaved in the same rounds; the shadow row for the models that have it.
    paths = [p for p in [*args.paths, *live] if p != "shadow" or shadowed]
    # The limit again between every two groups of cells (one client count of one round),
    # with the servers up and idle, at the batches within 10% of the best above: on these
    # machines the limit drifts by 30% within minutes, and each cell is compared with the
    # mean of the measurements right before and right after its group.
    near_best = tuple(int(b) for b, rate in report["raw"][name].items()
                      if rate >= 0.9 * max(report["raw"][name].values()))
    points: list[dict[str, float]] = []
    report.setdefault("raw_points", {})[name] = points
    raw_point = functools.partial(_raw_point, points, artifact, row, args, near_best)
    before = raw_point()
    for round_number in range(args.rounds):
        for clients in args.clients:
            group = []
            for path in paths:
                roles = [path] if path == "naive" or path in live else ["web", "worker", "redis"]
                cpu_before = {role: cpu_seconds(stack.pids(role)) for role in roles}
                batches_before = _batch_counters(path, paddock, slug, live)
                cell = run_load(path, clients=clients, seconds=seconds, **targets[path])
                cell.update(model=name, path=path, clients=clients, round=round_number)
                for role in roles:
                    cell[f"cpu_{role}_s"] = round(cpu_seconds(stack.pids(role)) - cpu_before[role], 2)
                if batches_before is not None:
                    if path not in live:
                        time.sleep(1.1)  # workers publish their batch counters once a second
                    after = _batch_counters(path, paddock, slug, live) or batches_before
                    batches, executed = after[0] - batches_before[0], after[1] - batches_before[1]
                    cell["batches"] = batches
                    cell["mean_batch_rows"] = round(executed / batches, 2) if batches else None
                drained = _drain(path, *drains[path], naive_body)
                if drained:
                    cell["drain_error"] = drained
                group.append(cell)
                report["cells"].append(cell)
                log(f"{name} round {round_number + 1} {path:11} c={clients:<3} {cell['rps']:9.0f} req/s  "
                    f"p50 {cell['p50_ms']:.2f} ms  p99 {cell['p99_ms']:.2f} ms  errors {cell['errors']}")
            after_group = raw_point()
            for cell in group:
                cell["raw_limit"] = (before + after_group) / 2
            before = after_group
    stack.stop("naive")
    for peer in live:
        stack.stop(peer)
    if args.offline:  # batch jobs, online beside a job, stream scoring, on the same Paddock
        measure_offline(name, artifact, row, args=args, report=report, paddock=paddock,
                        raw_point=functools.partial(_raw_point, [], artifact, row, args, near_best),
                        rest_binary=targets["rest_binary"],
                        drain=functools.partial(_drain, "rest_binary", *drains["rest_binary"], naive_body))


def _deploy(name: str, artifact: Path, row: dict[str, np.ndarray], *, args: argparse.Namespace,
            report: dict[str, Any], paddock: Paddock) -> tuple[int, float, bool]:
    """Registers the model (and its shadowed twin) in Paddock with the tuned settings, recorded in
    the report; (instances, cell seconds, whether it has the shadow path)."""
    slug = name.lower()
    by_rule = batch_size_for(report["raw"][name])
    max_batch = args.max_batch_size.get(name) or TUNED_BATCH.get(name) or by_rule
    seconds = max(args.seconds, min(20.0, CELL_REQUESTS / max(report["raw"][name].values())))
    instances = args.instances.get(name) or instances_for(report["raw"][name], args.intra_op_threads)
    report.setdefault("deployments", {})[name] = {"max_batch_size": max_batch, "instances": instances,
                                                  "max_batch_size_by_rule": by_rule, "cell_seconds": seconds}
    if instances > 1:
        report.setdefault("raw_instances", {})[name] = {
            "instances": instances, "batch": max_batch, "rows_per_s": raw_split(
                artifact, row, args.intra_op_threads, instances, max_batch, args.raw_seconds)}
    log(f"registering {name} through the API (max_batch_size {max_batch}, instances {instances}, "
        f"{seconds:.0f} s cells)")
    paddock.register(slug, artifact, max_batch, instances)
    shadowed = name in SHADOW_MODELS and "shadow" in args.paths
    if shadowed:
        log(f"registering {slug}-shadowed: v1 live, v2 a 100% shadow")
        paddock.register_shadowed(f"{slug}-shadowed", artifact, max_batch)
    return instances, seconds, shadowed


def _start_peers(name: str, artifact: Path, body: bytes, instances: int, *, args: argparse.Namespace,
                 report: dict[str, Any], stack: Stack, installed: dict[str, dict[str, Any]]) -> dict[str, peers.Launch]:
    """Each installed peer serving the model; one that cannot is left out, its error in the report."""
    slug = name.lower()
    live: dict[str, peers.Launch] = {}
    for peer in installed:
        try:
            try:
                live[peer] = start_peer(stack, peer, installed[peer], workdir=stack.workdir, artifact=artifact,
                                        model=slug, args=args, body=body, instances=instances)
            except (RuntimeError, OSError) as error:
                # Once seen on a loaded machine: PyTriton's Python backend stub refused
                # its model's connection at start (2026-12-03 17:52); a second start served.
                log(f"{peer}: could not start for {name} ({str(error)[:200]}); trying once more")
                live[peer] = start_peer(stack, peer, installed[peer], workdir=stack.workdir, artifact=artifact,
                                        model=slug, args=args, body=body, instances=instances)
            report["peers"][peer]["server"] = server_version(live[peer])
        except (RuntimeError, OSError) as error:
            log(f"{peer}: cannot serve {name}, measuring without it: {error}")
            earlier = report["peers"][peer].get("error")
            report["peers"][peer]["error"] = "; ".join(filter(None, [earlier, f"{name}: {error}"]))
    return live


def _raw_point(points: list[dict[str, float]], artifact: Path, row: dict[str, np.ndarray],
               args: argparse.Namespace, batches: tuple[int, ...]) -> float:
    """The raw limit between two groups of cells: one slice per batch, half the sweep's time."""
    rates = raw_limit(artifact, row, args.intra_op_threads, args.raw_seconds / 2, batches, slices=1)
    points.append(rates)
    return max(rates.values())


def _drain(path: str, url: str, token: str, body: bytes) -> str | None:
    """One request after a load cell, with time to finish the cell's backlog (a slow server may
    still be draining it), so that no cell starts beside another's leftovers."""
    try:
        post_succeeds(url, body, timeout=60, token=token)
        return None
    except OSError as error:
        log(f"{path}: still busy 60 s after its cell: {error}")
        return str(error)


def _batch_counters(path: str, paddock: Paddock, model: str,
                    live: dict[str, peers.Launch]) -> tuple[float, float] | None:
    """(batches, rows) executed so far on this path's side, where it counts them."""
    if path == "naive":
        return None
    if path not in live:
        return paddock.batch_counters(f"{model}-shadowed" if path == "shadow" else model)
    metrics_url = live[path].metrics_url
    if metrics_url is None:
        return None  # MLServer's /metrics has no executed-batch metric
    try:
        with urllib.request.urlopen(metrics_url, timeout=10) as response:
            return peers.batch_counters(response.read().decode(), model, "nv_inference_exec_count",
                                        "nv_inference_count")
    except OSError:
        return None
