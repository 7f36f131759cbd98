"""A model's live figures, as the API, the console's charts and its websocket push read them:
per version, the window's summary (serving.livestats.summarize) and one point per second."""

import time
from collections.abc import Sequence
from typing import Any

from registry.models import ModelVersion, RegisteredModel
from serving import livestats
from serving.v2.routes import ModelRoute, load_model_route, load_routes
from serving.v2.wire import fresh_heartbeats, holders_by_stream, stream_key, workers_key


def _point(second: int, counts: Any) -> dict[str, Any]:
    summary = livestats.summarize(counts, 1)
    return {"t": second, "rps": summary["requests"], "errors": summary["errors"], "in_flight": summary["in_flight"],
            "p50_ms": summary["latency_ms"]["total"]["p50"], "p95_ms": summary["latency_ms"]["total"]["p95"],
            "p99_ms": summary["latency_ms"]["total"]["p99"], "mean_batch_rows": summary["mean_batch_rows"]}


def model_figures(model: RegisteredModel, seconds: int = 60, conn: Any = None) -> dict[str, Any]:
    conn = conn or livestats.client()
    return _figures(model.name, load_model_route(model.name), seconds, conn, _holding(conn))


def models_figures(models: Sequence[RegisteredModel], seconds: int = 60, conn: Any = None) -> dict[int, dict[str, Any]]:
    """model_figures of several models, by model id: their routes read together (the same
    queries however many models), the workers' heartbeats read once."""
    conn = conn or livestats.client()
    routes = load_routes(model.pk for model in models)
    holding = _holding(conn)
    return {model.pk: _figures(model.name, routes.get(model.pk), seconds, conn, holding) for model in models}


def _holding(conn: Any) -> dict[str, list[str]]:
    """Version stream → the live workers holding it."""
    return holders_by_stream(fresh_heartbeats(conn.hgetall(workers_key())))


def _figures(name: str, route: ModelRoute | None, seconds: int, conn: Any,
             holding: dict[str, list[str]]) -> dict[str, Any]:
    end = int(time.time())  # the current second is still being counted: stop before it
    start = end - seconds
    figures: dict[str, Any] = {"model": name, "window": [start, end], "seconds": seconds, "active": None,
                               "routes": [], "shadow": None, "versions": []}
    if route is None:
        return figures
    for number in sorted(route.held_numbers | set(route.ready_numbers[-3:])):
        version = route.versions[number]
        per_second = livestats.read_seconds(conn, version.version_id, range(start, end))
        total = sum((c for c in per_second.values()), livestats.Counter())
        holders = holding.get(version.stream, [])
        figures["versions"].append({
            "version": number,
            "summary": livestats.summarize(total, seconds),
            "series": [_point(second, per_second[second]) for second in sorted(per_second)],
            "queue_depth": conn.xlen(version.stream) if holders else 0,
            "workers": holders,
        })
    figures.update(active=route.active, routes=[{"version": n, "weight": w} for n, w in route.weights],
                   shadow={"version": route.shadow[0], "percent": route.shadow[1]} if route.shadow else None)
    return figures


def version_holders(version: ModelVersion, conn: Any) -> tuple[int, int]:
    """How many live workers hold the version, and how many live workers there are."""
    beats = fresh_heartbeats(conn.hgetall(workers_key()))
    return len(holders_by_stream(beats).get(stream_key(version.pk, version.sha256), [])), len(beats)
