"""`make bench`: Paddock beside the raw onnxruntime limit and a naive server, in one run.

For each model, one after the other:
1. raw onnxruntime in this process at batch 1, 4, 16, 64 (the limit), before any server runs,
   and again at its best batches between every two groups of cells (the limit drifts);
2. Paddock (real uvicorn web processes, a Redis of its own, a Celery worker with its batcher,
   started as `make run` / docker-compose start them; models registered and deployed through the
   API), over v2 REST with JSON tensors, REST with binary tensors and the websocket stream;
3. the naive server (bench/naive_server.py) with the same onnxruntime settings;
4. with --peers, Seldon MLServer and PyTriton (bench/peers/), each from a virtualenv of its own
   that the bench installs under bench/ on first use, with the same settings and the same bodies;
cells interleaved in rounds, at 1, 16 and 64 closed-loop clients, load from a separate process
(wrk with a Lua body for REST, bench/ws_load.py for websockets);
5. after each model's cells, its offline rows on the same Paddock: a batch job, REST beside a long
   job, a pre-filled stream (bench/offline.py).
Reports req/s, p50/p95/p99, errors, each side's CPU and the executed batch sizes (Paddock's,
Triton's), and the offline rows' ratios to their targets; writes bench/results/<stamp>.json and
.png; a full run also refreshes docs/benchmarks.md.

This module is the command line; the parts: raw.py (step 1, and the deployment settings read from
it), servers.py (the processes of steps 2-4), load.py (wrk and ws_load runs), cells.py (the rounds
of cells), offline.py with jobs_api.py (step 5; BENCH_PROFILE_WORKER=<folder> runs the worker
under cProfile, profiled_worker.py), report.py and offline_report.py (summary, table, chart, docs)."""

import argparse
import json
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench import ROOT, offline, peers
from bench.cells import PATHS, measure
from bench.offline_report import summarize_offline
from bench.report import chart, summarize, table, update_doc

RESULTS = ROOT / "bench" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="M1 only, one round, short cells (< 2 minutes)")
    parser.add_argument("--models", default="M1,M2,M3")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--raw-seconds", type=float, default=2.0)
    parser.add_argument("--clients", default="1,16,64")
    parser.add_argument("--web-processes", type=int, default=2)
    parser.add_argument("--intra-op-threads", type=int, default=2)
    parser.add_argument("--paths", default=",".join(PATHS), help="a subset of " + ",".join(PATHS))
    parser.add_argument("--peers", default="", help="also measure mlserver and/or pytriton (comma-separated); "
                        "each is installed into bench/.venv-<peer> on first use")
    parser.add_argument("--redis-socket", action="store_true", help="web and worker reach Redis over a Unix socket")
    parser.add_argument("--max-batch-size", default="", help="override the deployments' max_batch_size, e.g. "
                        "M3=4,M2=16 (by default the largest batch up to 16 within 10%% of the best up to 16, "
                        "see batch_size_for)")
    parser.add_argument("--instances", default="", help="override the deployments' instances, e.g. M2=1 "
                        "(by default one per intra-op thread where one row takes 1 ms or more, see instances_for)")
    parser.add_argument("--offline", default=",".join(offline.KINDS), help="the offline rows to measure "
                        "(bench/offline.py), a subset of " + ",".join(offline.KINDS) + "; '' for none")
    parser.add_argument("--job-rows", default="", help="rows of each model's batch job, e.g. M1=200000,M2=5000 "
                        "(the default; --quick: M1=100000)")
    parser.add_argument("--job-chunk", default="", help="the jobs' chunk_size, e.g. M1=20000,M2=1000 (the default)")
    parser.add_argument("--shared-clients", default=",".join(map(str, offline.SHARED_CLIENTS)),
                        help="REST binary clients beside a job")
    parser.add_argument("--stream-events", type=int, default=None,
                        help=f"events in the pre-filled stream (default {offline.STREAM_EVENTS}; "
                        f"--quick: {offline.QUICK_STREAM_EVENTS})")
    parser.add_argument("--stream-batches", default=",".join(map(str, offline.STREAM_BATCHES)),
                        help="the bindings' batch_size, one binding each")
    parser.add_argument("--output", type=Path, default=None, help="results JSON path")
    parser.add_argument("--replot", type=Path, default=None, help="redraw the chart (and docs) of a results JSON")
    args = parser.parse_args()
    if args.replot:
        report = json.loads(args.replot.read_text())
        report["offline_summary"] = summarize_offline(report)
        chart(report, args.replot.with_suffix(".png"))
        if not report["config"]["quick"]:
            update_doc(report, args.replot.with_suffix(".png"))
        print(table(report))
        return
    if args.quick:
        args.models, args.rounds, args.seconds, args.raw_seconds = "M1", 1, 2.0, 0.5
    args.models = [m.strip().upper() for m in args.models.split(",") if m.strip()]
    args.clients = [int(c) for c in args.clients.split(",")]
    for flag in ("max_batch_size", "instances", "job_rows", "job_chunk"):
        try:
            setattr(args, flag, {model.strip().upper(): int(number) for model, number in
                                 (item.split("=") for item in getattr(args, flag).split(",") if item.strip())})
        except ValueError:
            parser.error(f"--{flag.replace('_', '-')} takes MODEL=NUMBER pairs, not {getattr(args, flag)!r}")
    args.job_rows = args.job_rows or (offline.QUICK_JOB_ROWS if args.quick else offline.JOB_ROWS)
    if args.stream_events is None:
        args.stream_events = offline.QUICK_STREAM_EVENTS if args.quick else offline.STREAM_EVENTS
    args.offline = [kind for kind in offline.KINDS if kind in args.offline.split(",")]
    args.shared_clients = [int(c) for c in args.shared_clients.split(",") if c.strip()]
    args.stream_batches = [int(b) for b in args.stream_batches.split(",") if b.strip()]
    args.paths = [p for p in PATHS if p in args.paths.split(",")]
    args.peers = [p.strip().lower() for p in args.peers.split(",") if p.strip()]
    unknown = set(args.peers) - set(peers.NAMES)
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(sorted(unknown))}: choose from {', '.join(peers.NAMES)}")
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    report = measure(args)
    report["summary"] = summarize(report)
    report["offline_summary"] = summarize_offline(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = args.output or RESULTS / f"{stamp}.json"
    output.write_text(json.dumps(report, indent=2))
    chart_file = output.with_suffix(".png")
    chart(report, chart_file)
    print(table(report))
    print(f"\nresults: {output}\nchart:   {chart_file}")
    if not args.quick and args.output is None:
        update_doc(report, chart_file)


if __name__ == "__main__":
    main()
