"""The offline rows of `make bench`, measured on the same Paddock after a model's cells (the naive
server and the peers stopped), with the raw limit measured again around each measurement:

1. batch: a job of JOB_ROWS rows (npy, JOB_CHUNK rows a chunk), uploaded over the API and polled
   until it succeeds, once per round after a one-chunk warm-up job: its rows ÷ (finished_at −
   started_at), and ÷ (finished_at − the moment before the upload: end to end), each ÷ the raw
   limit around it; the chunks' compute seconds and claim-to-done spans (from the database) say
   where the rest of the time went;
2. shared (M1): REST binary at 16 and 64 clients idle, then while a long job runs on the same
   worker, then idle again, in each round; p99 during ÷ the mean of the two idle p99s, and the
   job's rows/s meanwhile (its rows done, as its chunks report them, over the cell's seconds);
3. stream (M1): a stream pre-filled with STREAM_EVENTS one-row binary messages (XADD pipelines),
   then a binding on it with start "0", for each batch size: events ÷ seconds from the binding's
   creation until its sink holds every prediction (then the group's lag is 0).
The ratios to REST and the targets: bench/offline_report.py."""

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.jobs_api import ENDED, cancel_job, chunk_times, job, rows_done, stamp, submit_job, wait_job
from bench.load import Target, run_load
from bench.raw import raw_limit
from bench.servers import Paddock, cpu_seconds, thread_cpu_seconds

JOB_ROWS = {"M1": 200_000, "M2": 5_000}
JOB_CHUNK = {"M1": 20_000, "M2": 1_000}
QUICK_JOB_ROWS = {"M1": 100_000}
SHARED_MODELS = {"M1"}
SHARED_CLIENTS = (16, 64)
SHARED_MAX_BYTES = 768 << 20  # the long job's file at most (servers.py lets Paddock take 1 GiB)
STREAM_MODELS = {"M1"}
STREAM_EVENTS, QUICK_STREAM_EVENTS = 200_000, 50_000
STREAM_BATCHES = (256, 1024)
KINDS = ("batch", "shared", "stream")
# The job is polled as `paddock jobs wait` polls it (paddock_cli/main.py); its rate comes from the
# server's started_at and finished_at, so polling more often only tells the bench sooner, and costs
# the job: at 10 polls a second the web processes used 0.11 CPU-s a second (11 ms a poll), 5% of
# the 2-core machine, taken from the job's inferences (M2: 0.87 against 0.9 ÷ raw).
JOB_POLL_SECONDS = 0.5
# The cells beside a job (and their idle cells) last at least this long: a p99 is its slowest 1%,
# and 4 s at 64 clients is short for it (adjacent idle cells read 23 and 51 ms, and one full run
# read 1.94x where the next read 1.12x; 2026-12-05); ten seconds also hold each 10 s beat task
# (rollups) once in every cell, not in some cells only.
SHARED_SECONDS = 10.0
TEAM = "bench"  # servers.Paddock's team: on Paddock's Redis a binding's keys start with "<team>:"


def log(message: str) -> None:
    from bench.cells import log as cells_log

    cells_log(message)


def measure_offline(name: str, artifact: Path, row: dict[str, np.ndarray], *, args: argparse.Namespace,
                    report: dict[str, Any], paddock: Paddock, raw_point: Callable[[], float], rest_binary: Target,
                    drain: Callable[[], object]) -> None:
    """The model's offline rows (those it has) into report["offline"][name]."""
    slug = name.lower()
    found: dict[str, Any] = {}
    workdir = Path(paddock.stack.workdir)
    rows = args.job_rows.get(name, 0)
    if rows and {"batch", "shared"} & set(args.offline):  # the shared cells size their job from its rate
        chunk = min(rows, args.job_chunk.get(name) or JOB_CHUNK.get(name) or rows)
        found["batch"] = batch_jobs(name, artifact, row, rows, chunk, args=args, paddock=paddock,
                                    raw_point=raw_point)
        if name in SHARED_MODELS and "shared" in args.offline:
            seconds = args.seconds if args.quick else max(args.seconds, SHARED_SECONDS)
            # One job long enough to outlast the cell: while online requests flow a job rests
            # PADDOCK_JOB_ONLINE_YIELD times each inference, so it runs at most 1/(1 + yield) of
            # the time, at its rate alone; and alone for a moment before the cell starts.
            share = 1 / (1 + float(os.environ.get("PADDOCK_JOB_ONLINE_YIELD", 1.0)))
            rate = statistics.median(r["rows_per_s"] for r in found["batch"]["runs"])
            row_bytes = sum(a.nbytes // len(a) for a in row.values())
            long_job = workdir / f"{slug}-long.npy"
            np.save(long_job, _rows(row, int(min(rate * (share * (seconds + 1) + 0.5),
                                                 SHARED_MAX_BYTES // row_bytes))))
            found["shared"] = [shared_cells(paddock, slug, long_job, chunk_size=chunk, clients=clients,
                                            seconds=seconds, target=rest_binary, drain=drain,
                                            round_number=round_number)
                               for round_number in range(args.rounds) for clients in args.shared_clients]
            long_job.unlink()
    if name in STREAM_MODELS and "stream" in args.offline and args.stream_events:
        found["stream"] = [stream_rate(paddock, slug, row, events=args.stream_events, batch_size=size)
                           for size in args.stream_batches]
    if found:
        report.setdefault("offline", {})[name] = found


def _rows(row: dict[str, np.ndarray], rows: int) -> np.ndarray:
    """`rows` random rows shaped like the model's one input (npy holds one array)."""
    (array,) = row.values()
    return np.random.default_rng(7).standard_normal((rows, *array.shape[1:]), dtype=np.float32).astype(array.dtype)


def run_rows(row: dict[str, np.ndarray]) -> int:
    """Rows per inference of a job's chunk (workers/jobs.py: rows_per_run), with the worker's settings."""
    per_row = sum(a.nbytes // len(a) for a in row.values())
    return max(1, min(int(os.environ.get("PADDOCK_JOB_RUN_ROWS", 1024)),
                      int(os.environ.get("PADDOCK_JOB_RUN_BYTES", 8 * 1024 * 1024)) // per_row))


# -- 1. batch jobs ----------------------------------------------------------------------------

def batch_jobs(name: str, artifact: Path, row: dict[str, np.ndarray], rows: int, chunk: int, *,
               args: argparse.Namespace, paddock: Paddock, raw_point: Callable[[], float]) -> dict[str, Any]:
    """A warm-up job of one chunk, then the job once per round, each ÷ the raw limit measured
    right before and right after it; and the raw limit at the chunks' own batch."""
    slug, workdir = name.lower(), Path(paddock.stack.workdir)
    values = _rows(row, rows)
    np.save(workdir / f"{slug}-job.npy", values)
    np.save(workdir / f"{slug}-warm.npy", values[:chunk])
    run_job(paddock, slug, workdir / f"{slug}-warm.npy", chunk)  # first inferences, page cache
    runs = []
    before = raw_point()
    for round_number in range(args.rounds):
        measured = run_job(paddock, slug, workdir / f"{slug}-job.npy", chunk)
        after = raw_point()
        measured.update(round=round_number, raw_before=before, raw_after=after, raw_limit=(before + after) / 2)
        measured["ratio_to_raw"] = measured["rows_per_s"] / measured["raw_limit"]
        measured["e2e_ratio_to_raw"] = measured["e2e_rows_per_s"] / measured["raw_limit"]
        before = after
        runs.append(measured)
        log(f"{name} batch job, {rows:,} rows in chunks of {chunk:,}: {measured['rows_per_s']:,.0f} rows/s "
            f"({measured['ratio_to_raw']:.2f} × raw), end to end {measured['e2e_rows_per_s']:,.0f} "
            f"({measured['e2e_ratio_to_raw']:.2f}); phases {measured['phases_s']}; cpu {measured['cpu_s']}; "
            f"worker threads {measured['worker_threads_cpu_s']}")
    for used in ("job", "warm"):
        (workdir / f"{slug}-{used}.npy").unlink()
    per_run = run_rows(row)  # the raw limit at the chunks' own batch too
    at_run_rows = raw_limit(artifact, row, args.intra_op_threads, args.raw_seconds / 2, (per_run,), slices=1)
    return {"rows": rows, "chunk_size": chunk, "run_rows": per_run, "raw_at_run_rows": at_run_rows[str(per_run)],
            "runs": runs}


def run_job(paddock: Paddock, model: str, inputs: Path, chunk_size: int) -> dict[str, Any]:
    """One job from upload to `succeeded`, with its rates, where its time went, and the CPU
    seconds each of the stack's roles (and the bench's own polling) used meanwhile."""
    roles = list(paddock.stack.processes)
    submitted = time.time()
    answer = submit_job(paddock, model, inputs, chunk_size)
    accepted = time.time()
    cpu_before = {role: cpu_seconds(paddock.stack.pids(role)) for role in roles}
    threads_before = thread_cpu_seconds(paddock.stack.pids("worker"))
    bench_before = sum(os.times()[:2])
    done = wait_job(paddock, model, answer["id"], {"succeeded"}, every=JOB_POLL_SECONDS)
    if done["state"] != "succeeded":
        raise RuntimeError(f"the bench's job for {model} ended {done['state']}: {done.get('error')}")
    rows = done["rows_total"]
    started, finished = stamp(done["started_at"]), stamp(done["finished_at"])
    chunks = chunk_times(paddock, answer["id"])
    running = finished - started
    result: dict[str, Any] = {
        "chunks": done["chunks_total"], "seconds": round(running, 3), "rows_per_s": rows / running,
        "e2e_seconds": round(finished - submitted, 3), "e2e_rows_per_s": rows / (finished - submitted),
        "phases_s": {}, "compute_rows_per_s": None,
        "cpu_s": {role: round(cpu_seconds(paddock.stack.pids(role)) - cpu_before[role], 2) for role in roles}
        | {"bench": round(sum(os.times()[:2]) - bench_before, 2)},
    }
    threads = thread_cpu_seconds(paddock.stack.pids("worker"))
    busiest = sorted(((seconds - threads_before.get(key, 0.0), key) for key, seconds in threads.items()), reverse=True)
    result["worker_threads_cpu_s"] = {key: round(seconds, 2) for seconds, key in busiest[:6] if seconds > 0}
    if chunks:
        last = max(c["finished"] for c in chunks)
        compute = sum(c["seconds"] for c in chunks)
        # The upload (read, checked, stored and queued by the web process; the first chunk may
        # start before its answer), the chunks' inferences, the rest of each chunk (its read,
        # progress, write, claim and finish), Celery between chunks, the assembly.
        result["phases_s"] = {name: round(value, 3) for name, value in {
            "upload": accepted - submitted, "compute": compute,
            "chunk_other": sum(c["span"] for c in chunks) - compute,
            "between_chunks": (last - started) - sum(c["span"] for c in chunks),
            "assembly": finished - last}.items()}
        result["compute_rows_per_s"] = rows / compute if compute else None
    return result


# -- 2. online requests beside a job ---------------------------------------------------------

def shared_cells(paddock: Paddock, model: str, inputs: Path, *, chunk_size: int, clients: int, seconds: float,
                 target: Target, drain: Callable[[], object], round_number: int) -> dict[str, Any]:
    """Idle cell, a cell beside a long job, idle cell (REST binary, `clients` clients); what is
    left of the job after its cell is cancelled."""
    first = run_load("rest_binary", clients=clients, seconds=seconds, **target)
    drain()
    job_id = submit_job(paddock, model, inputs, chunk_size)["id"]
    wait_job(paddock, model, job_id, {"running"}, every=0.02)
    before, began = rows_done(paddock, model, [job_id]), time.monotonic()
    during = run_load("rest_binary", clients=clients, seconds=seconds, **target)
    after, ended = rows_done(paddock, model, [job_id]), time.monotonic()
    state = job(paddock, model, job_id)["state"]
    if state not in ENDED:
        cancel_job(paddock, model, job_id)
    rows_total = wait_job(paddock, model, job_id, ENDED)["rows_total"]
    drain()
    last = run_load("rest_binary", clients=clients, seconds=seconds, **target)
    drain()
    idle_p99 = (first["p99_ms"] + last["p99_ms"]) / 2
    result = {
        "clients": clients, "round": round_number, "idle": [first, last], "during": during, "job_rows": rows_total,
        "p99_ratio": during["p99_ms"] / idle_p99, "rps_ratio": during["rps"] / ((first["rps"] + last["rps"]) / 2),
        "job_rows_per_s": (after - before) / (ended - began),
        # False: the job ended before the cell did, so part of the cell ran beside none
        "job_outlasted_cell": state not in ENDED,
    }
    log(f"{model.upper()} beside a job, c={clients}: p99 {first['p99_ms']:.2f} / {during['p99_ms']:.2f} / "
        f"{last['p99_ms']:.2f} ms (idle, job, idle), {during['rps']:,.0f} req/s, job "
        f"{result['job_rows_per_s']:,.0f} rows/s{'' if result['job_outlasted_cell'] else ' (ended early)'}")
    return result


# -- 3. stream scoring -----------------------------------------------------------------------

def stream_rate(paddock: Paddock, model: str, row: dict[str, np.ndarray], *, events: int,
                batch_size: int, timeout: float = 600) -> dict[str, Any]:
    """Pre-fills a stream with `events` one-row binary messages, binds it (start "0") and times
    the binding until its sink holds every prediction."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=paddock.redis_port)
    source, name = f"{TEAM}:{model}-events-{batch_size}", f"bench-{batch_size}"
    sink, dead = f"{source}:predictions", f"{source}:dead"
    client.delete(source, sink, dead)
    ((input_name, array),) = row.items()
    header: dict[Any, Any] = {f"{input_name}.shape": ",".join(str(n) for n in array.shape),
              f"{input_name}.datatype": {"float32": "FP32", "int64": "INT64"}[array.dtype.name]}
    values = _rows(row, events)
    pipe = client.pipeline(transaction=False)
    for index in range(events):
        pipe.xadd(source, {input_name: values[index].tobytes(), **header})
        if index % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    created = time.monotonic()
    status, payload = paddock.request("POST", f"/api/v1/models/{model}/streams/", json.dumps(
        {"name": name, "source": source, "start": "0", "batch_size": batch_size}).encode())
    if status != 201:
        raise RuntimeError(f"stream binding for {model} refused: {status} {payload[:500]!r}")
    first, written = 0.0, 0
    while written < events:
        if time.monotonic() - created > timeout:
            raise RuntimeError(f"stream {source}: {written} of {events} predictions after {timeout:.0f} s")
        time.sleep(0.02)
        written = int(client.xlen(sink))
        first = first or (time.monotonic() if written else 0.0)
    finished = time.monotonic()
    figures = _stream_figures(paddock, model, name)
    result = {
        "events": events, "batch_size": batch_size, "seconds": round(finished - created, 3),
        "events_per_s": events / (finished - created), "dead": int(client.xlen(dead)),
        # from the first prediction on: without the worker's pick-up of the binding (it reads
        # the bindings once a second) and the first batch
        "steady_events_per_s": events / (finished - first) if finished > first else None,
        "lag_at_end": figures.get("lag"),
    }
    paddock.request("DELETE", f"/api/v1/models/{model}/streams/{name}/")
    client.delete(source, sink, dead, f"{source}:paddock:answered")
    client.close()
    log(f"{model.upper()} stream, batch_size {batch_size}: {result['events_per_s']:,.0f} events/s "
        f"({result['seconds']:.1f} s for {events:,}; lag then {result['lag_at_end']})")
    return result


def _stream_figures(paddock: Paddock, model: str, name: str, timeout: float = 5) -> dict[str, Any]:
    """The binding's figures once a worker says its lag is 0 (or what it said last)."""
    deadline, figures = time.monotonic() + timeout, dict[str, Any]()
    while time.monotonic() < deadline:
        status, payload = paddock.get(f"/api/v1/models/{model}/streams/{name}/")
        figures = (json.loads(payload).get("figures") or {}) if status == 200 else {}
        if figures.get("lag") == 0:
            break
        time.sleep(0.2)
    return dict(figures)
