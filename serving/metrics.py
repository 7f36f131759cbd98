"""Prometheus metrics of the data plane, kept in memory by each web process and exported on
/metrics (names follow Prometheus conventions; Triton's nv_inference_* set is the model).
Worker-side figures (batches executed, versions held, memory) come from the workers' heartbeats."""

import functools
import hashlib
import re
from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from serving.v2.wire import fresh_heartbeats, workers_key

REGISTRY = CollectorRegistry(auto_describe=True)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)

REQUESTS = Counter("paddock_inference_requests", "Inference requests answered, by status code",
                   ["model", "version", "code"], registry=REGISTRY)
DURATION = Histogram("paddock_inference_request_duration_seconds",
                     "Time per request: queue (waiting for a worker), compute (the batch's run), total",
                     ["model", "version", "phase"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
BATCH_SIZE = Histogram("paddock_inference_batch_size_rows", "Rows in the batch each request ran in",
                       ["model", "version"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=REGISTRY)
IN_FLIGHT = Gauge("paddock_inference_in_flight_requests", "Requests waiting for their reply in this process",
                  ["model"], registry=REGISTRY)
SHADOW_REQUESTS = Counter("paddock_shadow_requests", "Mirrored requests run on a shadow version, by outcome",
                          ["model", "version", "outcome"], registry=REGISTRY)
SHADOW_ROWS = Counter("paddock_shadow_compared_rows", "Rows of classifier outputs compared with the live answer",
                      ["model", "version"], registry=REGISTRY)
SHADOW_AGREE = Counter("paddock_shadow_agreeing_rows", "Compared rows whose argmax matched the live answer",
                       ["model", "version"], registry=REGISTRY)
SHADOW_DIFF = Histogram("paddock_shadow_max_abs_difference", "Largest absolute output difference per request",
                        ["model", "version"], buckets=(1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1, 10),
                        registry=REGISTRY)


def shadow(model: str, version: str, outcome: str, comparison: dict[str, Any] | None) -> None:
    """outcome: ok, error (the shadow failed), skipped (its backlog was full)."""
    SHADOW_REQUESTS.labels(model, version, outcome).inc()
    if comparison is not None:
        SHADOW_ROWS.labels(model, version).inc(comparison["rows"])
        SHADOW_AGREE.labels(model, version).inc(comparison["agree"])
        SHADOW_DIFF.labels(model, version).observe(comparison["max_abs_diff"])


class Series:
    """The labelled children of one model version, looked up once: `labels()` per request
    costs a lock and several dict lookups on the hot path."""

    def __init__(self, model: str, version: str) -> None:
        self.model, self.version = model, version
        self.queue = DURATION.labels(model, version, "queue")
        self.compute = DURATION.labels(model, version, "compute")
        self.total = DURATION.labels(model, version, "total")
        self.batch = BATCH_SIZE.labels(model, version)
        self._codes: dict[int, Counter] = {}

    def requests(self, code: int) -> Counter:
        """The request counter for status `code`, looked up on its first use only."""
        counter = self._codes.get(code)
        if counter is None:
            counter = self._codes[code] = REQUESTS.labels(self.model, self.version, str(code))
        return counter


_series: dict[tuple[str, str], Series] = {}
_in_flight: dict[str, Gauge] = {}


def in_flight(model: str) -> Gauge:
    """The in-flight gauge of `model`, looked up on its first use only."""
    gauge = _in_flight.get(model)
    if gauge is None:
        gauge = _in_flight[model] = IN_FLIGHT.labels(model)
    return gauge


def series(model: str, version: str) -> Series:
    """The Series of a model version, built on its first use only."""
    found = _series.get((model, version))
    if found is None:
        found = _series[(model, version)] = Series(model, version)
    return found


def live_workers(client: redis.Redis) -> dict[str, dict[str, Any]]:
    """Workers whose heartbeat is fresh: name → {held versions, rss, host, pid, ts}."""
    return fresh_heartbeats(client.hgetall(workers_key()))


_MODEL_LABEL = re.compile(rb'[{,]model="([^"]*)"')
_WORKER_LABEL = re.compile(rb'([{,])worker="([^"]*)"')


def opaque_worker(name: str) -> str:
    """A worker's stable name for those who may not know its host and pid (which its name carries)."""
    return "worker-" + hashlib.blake2b(name.encode(), digest_size=4).hexdigest()


def only_models(exposition: bytes, names: set[str]) -> bytes:
    """Prometheus text narrowed to the series of models in `names`: a sample labelled with another
    model is dropped, and workers are named opaquely (as `workers_seen_by` does); comments and
    process-wide series stay."""
    kept = []
    for line in exposition.splitlines(keepends=True):
        if not line.startswith(b"#"):
            model = _MODEL_LABEL.search(line)
            if model is not None and model.group(1).decode() not in names:
                continue
            line = _WORKER_LABEL.sub(
                lambda m: m.group(1) + b'worker="' + opaque_worker(m.group(2).decode()).encode() + b'"', line)
        kept.append(line)
    return b"".join(kept)


def workers_seen_by(workers: dict[str, dict[str, Any]], *, model_names: set[str] | None,
                    details: bool) -> dict[str, dict[str, Any]]:
    """The workers as one caller may see them: only the holdings of models it may see
    (`model_names`; None: every model), and their names (host and pid), host, pid and GPUs only
    with `details` (admins; others get a stable opaque name). Other teams' model names, and where
    the workers run, are not everyone's to read."""
    seen = {}
    for name, beat in workers.items():
        held = [h for h in beat.get("held", []) if model_names is None or h.get("model") in model_names]
        visible = {**beat, "held": held}
        if not details:
            visible.update(host=None, pid=None, gpus=[])
            name = opaque_worker(name)
        seen[name] = visible
    return seen


@functools.cache
def scrape_client(redis_url: str) -> redis.Redis:
    """The collectors' one connection pool per process, kept across scrapes."""
    return redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)


class WorkerCollector(Collector):
    """Reads the workers' heartbeats and the queues' depth at scrape time."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url

    def collect(self) -> Iterator[Any]:
        """The worker and queue families, filled with what Redis answered (nothing while it is down)."""
        loaded = GaugeMetricFamily("paddock_worker_version_loaded", "1 for each version a worker holds",
                                   labels=["worker", "model", "version"])
        memory = GaugeMetricFamily("paddock_worker_memory_bytes", "Resident memory of each worker process",
                                   labels=["worker"])
        cpu = GaugeMetricFamily("paddock_worker_cpu_percent", "CPU used by each worker process (100 = one core)",
                                labels=["worker"])
        gpu_util = GaugeMetricFamily("paddock_worker_gpu_utilization_percent", "GPU utilisation (NVML)",
                                     labels=["worker", "gpu"])
        gpu_memory = GaugeMetricFamily("paddock_worker_gpu_memory_used_bytes", "GPU memory in use (NVML)",
                                       labels=["worker", "gpu"])
        batches = CounterMetricFamily("paddock_inference_batches", "Batches executed by each worker",
                                      labels=["worker", "model", "version"])
        rows = CounterMetricFamily("paddock_inference_batch_rows", "Rows executed by each worker",
                                   labels=["worker", "model", "version"])
        depth = GaugeMetricFamily("paddock_inference_queue_depth", "Requests queued or running per version",
                                  labels=["model", "version"])
        try:
            client = scrape_client(self.redis_url)
            workers = live_workers(client)
            seen: set[tuple[str, str, str]] = set()
            for worker, beat in workers.items():
                memory.add_metric([worker], beat.get("rss", 0))
                cpu.add_metric([worker], beat.get("cpu", 0.0))
                for gpu in beat.get("gpus", []):
                    gpu_util.add_metric([worker, str(gpu["index"])], gpu["util"])
                    gpu_memory.add_metric([worker, str(gpu["index"])], gpu["memory_used"])
                for held in beat.get("held", []):
                    labels = [worker, held["model"], str(held["number"])]
                    loaded.add_metric(labels, 1)
                    batches.add_metric(labels, held.get("batches", 0))
                    rows.add_metric(labels, held.get("rows", 0))
                    seen.add((held["model"], str(held["number"]), held["stream"]))
            for model, number, stream in sorted(seen):
                depth.add_metric([model, number], client.xlen(stream))
        except redis.RedisError:
            pass  # the metrics page must answer even while Redis is down
        yield from (loaded, memory, cpu, gpu_util, gpu_memory, batches, rows, depth)


class StreamCollector(Collector):
    """Stream bindings at scrape time (serving.streams.status, as the workers publish it)."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url

    def collect(self) -> Iterator[Any]:
        """The binding families, filled with what Redis answered (nothing while it is down)."""
        from serving.streams import status

        labels = ["model", "binding"]
        lag = GaugeMetricFamily("paddock_stream_lag_messages", "Messages not yet answered: pending + undelivered",
                                labels=labels)
        pending = GaugeMetricFamily("paddock_stream_pending_messages", "Messages read but not yet acknowledged",
                                    labels=labels)
        counters = {name: CounterMetricFamily(f"paddock_stream_{metric}", text, labels=labels)
                    for name, metric, text in (("read", "messages_read", "Source messages read by the workers"),
                                               ("predicted", "predictions", "Predictions written to the sink"),
                                               ("dead", "dead_letters", "Messages sent to the dead-letter stream"),
                                               ("rows", "rows", "Rows run for the binding"))}
        try:
            bindings = status.for_metrics(scrape_client(self.redis_url))
        except redis.RedisError:
            bindings = []
        for binding in bindings:
            names = [binding["model"], binding["name"]]
            lag.add_metric(names, binding["lag"])
            pending.add_metric(names, binding["pending"])
            for name, family in counters.items():
                family.add_metric(names, binding[name])
        yield from (lag, pending, *counters.values())


class JobCollector(Collector):
    """Batch jobs at scrape time (serving.jobs.progress): each live job's rows and rows done, and
    the rows run per model."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url

    def collect(self) -> Iterator[Any]:
        """The job families, filled with what Redis answered (nothing while it is down)."""
        from serving.jobs import progress

        rows = GaugeMetricFamily("paddock_job_rows", "Rows of each live batch job", labels=["model", "job"])
        done = GaugeMetricFamily("paddock_job_rows_done", "Rows done of each live batch job", labels=["model", "job"])
        running = GaugeMetricFamily("paddock_jobs_live", "Batch jobs queued or running per model", labels=["model"])
        processed = CounterMetricFamily("paddock_job_rows_processed", "Rows run by batch-job chunks per model",
                                        labels=["model"])
        try:
            live, counts = progress.figures(scrape_client(self.redis_url))
        except redis.RedisError:
            live, counts = [], {}
        per_model: dict[str, int] = {}
        for job in live:
            rows.add_metric([job["model"], str(job["job"])], job["rows"])
            done.add_metric([job["model"], str(job["job"])], min(job["done"], job["rows"]))
            per_model[job["model"]] = per_model.get(job["model"], 0) + 1
        for model, count in sorted(per_model.items()):
            running.add_metric([model], count)
        for model, count in sorted(counts.items()):
            processed.add_metric([model], count)
        yield from (rows, done, running, processed)
