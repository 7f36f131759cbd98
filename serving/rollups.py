"""Live figures kept in Postgres: the per-second counts in Redis (serving.livestats, kept two
hours) are merged into 10-second periods, those into minutes, and old periods are deleted.
The API reads any window from them (serving.rollups.history)."""

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from registry.models import ModelVersion
from serving import livestats
from serving.models import MetricRollup

PERIOD = 10
MINUTE = 60
# Web processes add a second's counts about a second after it ends: roll up only older seconds.
SETTLE_SECONDS = 3
# How far back a first run (or one after a long pause) looks: what Redis still holds.
LOOKBACK_SECONDS = livestats.STATS_TTL_SECONDS - 600


def _rolled_key() -> str:
    return f"{settings.PADDOCK_REDIS_PREFIX}:stats:rolled"


def _at(second: int) -> datetime:
    return datetime.fromtimestamp(second, tz=UTC)


def _upsert(rows: list[MetricRollup]) -> None:
    MetricRollup.objects.bulk_create(rows, update_conflicts=True, unique_fields=["version", "resolution", "start"],
                                     update_fields=["requests", "errors", "counts"])


def _row(version_id: int, resolution: int, start: int, counts: Counter[str]) -> MetricRollup:
    summary = livestats.summarize(counts, resolution)
    return MetricRollup(version_id=version_id, resolution=resolution, start=_at(start),
                        requests=summary["requests"], errors=summary["errors"], counts=dict(counts))


def roll_up(now: float | None = None, conn: Any = None) -> dict[str, int]:
    """One pass: every complete 10 s period since the last pass, the minutes they complete, and
    the retention. Idempotent (upserts), so an overlapping or repeated pass changes nothing."""
    conn = conn or livestats.client()
    now = int(now if now is not None else time.time())
    end = (now - SETTLE_SECONDS) // PERIOD * PERIOD
    last = conn.get(_rolled_key())
    start = max(int(last) if last else 0, (now - LOOKBACK_SECONDS) // PERIOD * PERIOD)
    written = {"periods": 0, "minutes": 0, "deleted": 0}
    if end <= start:
        return written
    candidates = [int(v) for v in conn.zrangebyscore(livestats.active_key(), start, "+inf")]
    version_ids = set(ModelVersion.objects.filter(pk__in=candidates).values_list("pk", flat=True))
    rows: list[MetricRollup] = []
    for version_id in sorted(version_ids):
        seconds = livestats.read_seconds(conn, version_id, range(start, end))
        periods: dict[int, Counter[str]] = {}
        for second, counts in seconds.items():
            periods.setdefault(second // PERIOD * PERIOD, Counter()).update(counts)
        rows.extend(_row(version_id, PERIOD, period, counts) for period, counts in periods.items())
    minute_start, minute_end = start // MINUTE * MINUTE, end // MINUTE * MINUTE
    with transaction.atomic():
        _upsert(rows)
        written["periods"] = len(rows)
        if minute_end > minute_start:
            minutes: dict[tuple[int, int], Counter[str]] = {}
            for row in MetricRollup.objects.filter(resolution=PERIOD, start__gte=_at(minute_start),
                                                   start__lt=_at(minute_end)):
                key = (row.version_id, int(row.start.timestamp()) // MINUTE * MINUTE)
                minutes.setdefault(key, Counter()).update(row.counts)
            minute_rows = [_row(v, MINUTE, m, counts) for (v, m), counts in minutes.items()]
            _upsert(minute_rows)
            written["minutes"] = len(minute_rows)
        cutoff = timezone.now()
        deleted, _ = MetricRollup.objects.filter(
            resolution=PERIOD, start__lt=cutoff - timedelta(hours=settings.PADDOCK_ROLLUP_10S_RETENTION_HOURS)).delete()
        deleted_minutes, _ = MetricRollup.objects.filter(
            resolution=MINUTE, start__lt=cutoff - timedelta(hours=settings.PADDOCK_ROLLUP_1M_RETENTION_HOURS)).delete()
        written["deleted"] = deleted + deleted_minutes
    # Minutes are rebuilt from their periods, so the next pass restarts at this minute's start.
    conn.set(_rolled_key(), minute_end)
    return written


def history(version_ids: dict[int, int], start: datetime, end: datetime, resolution: int) -> list[dict[str, Any]]:
    """Per version (id → number): the window's summary and one point per period."""
    result = []
    rollups = MetricRollup.objects.filter(version_id__in=version_ids, resolution=resolution, start__gte=start,
                                          start__lt=end).order_by("start")
    by_version: dict[int, list[MetricRollup]] = {}
    for row in rollups:
        by_version.setdefault(row.version_id, []).append(row)
    seconds = max(1, int((end - start).total_seconds()))
    for version_id, number in sorted(version_ids.items(), key=lambda kv: kv[1]):
        rows = by_version.get(version_id, [])
        total: Counter[str] = Counter()
        points = []
        for row in rows:
            counts = Counter(row.counts)
            total.update(counts)
            summary = livestats.summarize(counts, resolution)
            points.append({"t": row.start.isoformat(), "rps": summary["rps"], "requests": summary["requests"],
                           "errors": summary["errors"], "codes": summary["codes"],
                           "latency_ms": summary["latency_ms"], "mean_batch_rows": summary["mean_batch_rows"],
                           "shadow": summary["shadow"]})
        result.append({"version": number, "summary": livestats.summarize(total, seconds), "points": points})
    return result
