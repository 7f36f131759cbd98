"""Live figures kept in Postgres: per-second counts flushed to the real Redis the way web
processes flush them, rolled up into 10 s and minute periods in the real PostgreSQL, read
back through the API for a window."""

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from django.conf import settings

from serving import livestats, rollups
from serving.models import MetricRollup


def flush(counts: dict[tuple[int, int], Counter[str]]) -> None:
    stats = livestats.LiveStats()
    stats.pending = counts

    async def run() -> None:
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        await stats.flush(client)
        await client.aclose()

    asyncio.run(run())


@pytest.fixture
def conn() -> Any:
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(rollups._rolled_key())
    return client


@pytest.mark.django_db
def test_periods_minutes_retention_and_the_history_api(iris: Any, conn: Any, client_for: Any) -> None:
    v1, v2 = iris.versions.get(number=1), iris.versions.get(number=2)
    base = (int(time.time()) - 240) // 60 * 60  # a whole minute, well settled
    counts: dict[tuple[int, int], Counter[str]] = {}
    for second in range(base, base + 30):
        counts[(v1.pk, second)] = Counter({"c200": 10, f"t{livestats.bucket(2.5)}": 10, "b4": 10})
    counts[(v1.pk, base + 5)]["c500"] += 1
    counts[(v1.pk, base + 5)][f"t{livestats.bucket(80)}"] += 1
    counts[(v2.pk, base + 61)] = Counter({"c200": 7, f"t{livestats.bucket(4)}": 7})
    flush(counts)
    old = MetricRollup.objects.create(version=v1, resolution=10, start=datetime.now(UTC) - timedelta(days=2))

    written = rollups.roll_up(conn=conn)
    again = rollups.roll_up(conn=conn)  # nothing new: idempotent
    assert written["periods"] >= 4 and written["deleted"] == 1 and again["periods"] == 0
    assert not MetricRollup.objects.filter(pk=old.pk).exists()
    periods = MetricRollup.objects.filter(version=v1, resolution=10).order_by("start")
    assert [p.requests for p in periods] == [101, 100, 100] and [p.errors for p in periods] == [1, 0, 0]
    minute = MetricRollup.objects.get(version=v1, resolution=60)
    assert minute.requests == 301 and minute.start == datetime.fromtimestamp(base, UTC)

    api = client_for("viewer", "read")
    start = datetime.fromtimestamp(base, UTC).isoformat()
    end = datetime.fromtimestamp(base + 120, UTC).isoformat()
    body = api.get("/api/v1/models/iris/metrics/history/", {"start": start, "end": end, "resolution": 10}).json()
    by_version = {v["version"]: v for v in body["versions"]}
    assert by_version[1]["summary"]["requests"] == 301 and by_version[1]["summary"]["errors"] == 1
    assert len(by_version[1]["points"]) == 3 and by_version[1]["points"][0]["codes"] == {"200": 100, "500": 1}
    total = by_version[1]["summary"]["latency_ms"]["total"]  # a synthetic histogram: 2.5 ms buckets
    assert 2 <= total["p50"] <= 3
    assert by_version[1]["summary"]["mean_batch_rows"] == 4
    assert by_version[2]["summary"]["requests"] == 7
    minutes = api.get("/api/v1/models/iris/metrics/history/", {"start": start, "end": end, "resolution": 60}).json()
    assert [p["requests"] for p in {v["version"]: v for v in minutes["versions"]}[1]["points"]] == [301]


@pytest.mark.django_db
@pytest.mark.parametrize(("params", "message"), [
    ({"resolution": "30"}, "resolution must be 10 or 60 (seconds)"),
    ({"start": "yesterday"}, "start must be an ISO 8601 date and time, e.g. 2026-11-23T10:00:00Z"),
    ({"start": "2026-11-23T10:00:00Z", "end": "2026-11-23T09:00:00Z"}, "start must be before end"),
    # Each of these was a 500 (found by tests/security/test_api_fuzz.py): no such day, an offset
    # over 24 h, a time past year 9999 in UTC, an hour before year 1.
    ({"start": "2026-02-30T10:00:00"}, "start must be an ISO 8601 date and time, e.g. 2026-11-23T10:00:00Z"),
    ({"end": "2026-01-01T00:00:00+25:00"}, "end must be an ISO 8601 date and time, e.g. 2026-11-23T10:00:00Z"),
    ({"end": "9999-12-31T23:59:59-23:59"}, "end must be an ISO 8601 date and time, e.g. 2026-11-23T10:00:00Z"),
    ({"end": "0001-01-01T00:00:00Z"}, "end is too early for the default window of an hour: send start too"),
    ({"start": "2026-01-01T00:00:00Z", "end": "2026-11-01T00:00:00Z", "resolution": "10"},
     "that window has more than 20000 periods at this resolution: use 60 or a shorter window"),
])
def test_history_refusals(iris: Any, client_for: Any, params: dict[str, str], message: str) -> None:
    response = client_for("viewer", "read").get("/api/v1/models/iris/metrics/history/", params)
    assert response.status_code == 400 and response.json() == {"detail": message}


@pytest.mark.django_db
@pytest.mark.parametrize("seconds", ["0", "3601", "\u00b2", "0" * 5000, "1e3"])
def test_the_live_window_is_a_whole_number_of_seconds(iris: Any, client_for: Any, seconds: str) -> None:
    """'²' passed str.isdigit() and then failed int(): a 500."""
    response = client_for("viewer", "read").get("/api/v1/models/iris/metrics/", {"seconds": seconds})
    assert response.status_code == 400
    assert response.json() == {"detail": "seconds must be a whole number from 1 to 3600"}
