"""A model's live figures, as the API, the console's charts and its websocket push read them:
per version, the window's summary (serving.livestats.summarize) and one point per second."""

import time
from typing import Any

from registry.models import RegisteredModel
from serving import livestats
from serving.v2.routes import load_model_route
from serving.v2.wire import fresh_heartbeats, holders_by_stream, workers_key


def _point(second: int, counts: Any) -> dict[str, Any]:
    summary = livestats.summarize(counts, 1)
    return {"t": second, "rps": summary["requests"], "errors": summary["errors"], "in_flight": summary["in_flight"],
            "p50_ms": summary["latency_ms"]["total"]["p50"], "p95_ms": summary["latency_ms"]["total"]["p95"],
            "p99_ms": summary["latency_ms"]["total"]["p99"], "mean_batch_rows": summary["mean_batch_rows"]}


def model_figures(model: RegisteredModel, seconds: int = 60, conn: Any = None) -> dict[str, Any]:
    conn = conn or livestats.client()
    route = load_model_route(model.name)
    end = int(time.time())  # the current second is still being counted: stop before it
    start = end - seconds
    numbers = sorted(route.held_numbers | set(route.ready_numbers[-3:])) if route else []
    holding = holders_by_stream(fresh_heartbeats(conn.hgetall(workers_key())))
    versions = []
    for number in numbers:
        version = route.versions[number]
        per_second = livestats.read_seconds(conn, version.version_id, range(start, end))
        total = sum((c for c in per_second.values()), livestats.Counter())
        holders = holding.get(version.stream, [])
        versions.append({
            "version": number,
            "summary": livestats.summarize(total, seconds),
            "series": [_point(second, per_second[second]) for second in sorted(per_second)],
            "queue_depth": conn.xlen(version.stream) if holders else 0,
            "workers": holders,
        })
    return {
        "model": model.name, "window": [start, end], "seconds": seconds,
        "active": route.active if route else None,
        "routes": [{"version": n, "weight": w} for n, w in route.weights] if route else [],
        "shadow": {"version": route.shadow[0], "percent": route.shadow[1]} if route and route.shadow else None,
        "versions": versions,
    }

