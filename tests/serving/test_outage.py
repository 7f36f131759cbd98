"""The data plane's pieces for a database outage, one at a time (the whole of it, with a real
PostgreSQL stopped under load, is tests/reliability/test_database_outage.py): the cache's last
good values and their grace, and token uses written in one UPDATE that never moves back."""

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import OperationalError

from console.audit import Actor
from console.errors import ServiceUnavailable
from console.models import ApiToken
from console.services import create_token
from serving.v2.cache import RefreshingCache
from serving.v2.outage import DATABASE_DOWN, not_cached, too_old
from serving.v2.tokenuse import write_last_used


class Database:
    """A loader whose database can be taken away: it counts its loads."""

    def __init__(self) -> None:
        self.up = True
        self.loads = 0

    async def load(self, key: str) -> str:
        self.loads += 1
        if not self.up:
            raise OperationalError("connection refused")
        return f"{key}-{self.loads}"


def age(cache: RefreshingCache[str, str], key: str, seconds: float) -> None:
    """Make the key's last good load `seconds` older, and due for a reload (instead of waiting)."""
    value, _, loaded, failing = cache.entries[key]
    cache.entries[key] = (value, time.monotonic() - cache.ttl - cache.stale, loaded - seconds, failing)


def test_the_cache_serves_the_last_good_value_within_the_grace_then_says_why_not() -> None:
    database = Database()
    cache: RefreshingCache[str, str] = RefreshingCache(database.load, ttl=60, unreachable=DATABASE_DOWN, grace=300,
                                                       what="routes")

    async def scenario() -> None:
        assert await cache.get("iris") == "iris-1"
        database.up = False
        age(cache, "iris", 200)
        assert await cache.get("iris") == "iris-1"  # the reload failed: the last good value stands
        assert database.loads == 2 and cache.entries["iris"][3]
        assert await cache.get("iris") == "iris-1"  # not tried again before `ttl`: no caller waits
        assert database.loads == 2
        with pytest.raises(ServiceUnavailable, match="^the database is unreachable and this process holds no "):
            await cache.get("unseen")
        age(cache, "iris", 101)  # now 301 s old
        with pytest.raises(ServiceUnavailable) as refused:
            await cache.get("iris")
        assert refused.value.message == too_old("routes", 300) == (
            "the database is unreachable and the cached routes are older than 300 s; retry once it is back")
        database.up = True
        age(cache, "iris", 0)
        assert await cache.get("iris") == f"iris-{database.loads}"  # back: loaded afresh
        assert not cache.entries["iris"][3]

    asyncio.run(scenario())
    assert not_cached("routes").startswith("the database is unreachable and this process holds no cached routes")


def test_a_bug_in_a_load_is_not_mistaken_for_an_outage() -> None:
    async def broken(key: str) -> str:
        raise ValueError("a bug")

    cache: RefreshingCache[str, str] = RefreshingCache(broken, ttl=60, unreachable=DATABASE_DOWN, grace=300)
    with pytest.raises(ValueError):
        asyncio.run(cache.get("iris"))


@pytest.mark.django_db
def test_token_uses_are_written_in_one_update_and_never_move_back(cast: dict[str, Any],
                                                                  django_assert_num_queries: Any) -> None:
    tokens = [create_token(actor=Actor.system("tests"), user=cast["viewer"], name=f"t{i}", scopes=["read"])[0]
              for i in range(3)]
    now = datetime.now(UTC).replace(microsecond=0)
    ApiToken.objects.filter(pk=tokens[2].pk).update(last_used_at=now + timedelta(hours=1))
    uses = {token.pk: (now - timedelta(seconds=i)).timestamp() for i, token in enumerate(tokens)}
    with django_assert_num_queries(1):
        assert write_last_used(uses) == 2  # the third was used later already (through the API)
    written = dict(ApiToken.objects.filter(pk__in=uses).values_list("pk", "last_used_at"))
    assert written == {tokens[0].pk: now, tokens[1].pk: now - timedelta(seconds=1),
                       tokens[2].pk: now + timedelta(hours=1)}
    assert write_last_used({tokens[0].pk: (now - timedelta(days=1)).timestamp()}) == 0  # never back
