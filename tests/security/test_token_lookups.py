"""Unknown bearer strings are cheap (issue 20, item 9): a string not shaped like a Paddock token
is refused before any lookup, with the message of an unknown token; an unknown token's refusal is
cached like a principal; the token cache is a bounded LRU (a flood of unknown keys costs the least
recently used entries, never the ones in use); an address's failed authentications are counted
(tests/security/test_streams.py: 429 over a real socket)."""

import asyncio
import json
import time
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from console.authentication import well_formed
from console.errors import TooManyRequests, Unauthenticated
from console.models import ApiToken, hash_token
from serving.v2.auth import FailureLimiter, Principal, TokenCache
from serving.v2.cache import RefreshingCache
from tests.integration.test_serving import call
from tests.security.conftest import Served, WebProcess

WELL_FORMED_UNKNOWN = "pdk_" + "Zz09_-" * 7 + "Q"  # 43 characters of the alphabet, issued to no one
MALFORMED = {
    "short": "pdk_wrong",
    "one character short": "pdk_" + "A" * 42,
    "one character long": "pdk_" + "A" * 44,
    "another prefix": "PDK_" + "A" * 43,
    "padding": "pdk_" + "A" * 42 + "=",
    "standard base64": "pdk_" + "A" * 41 + "+/",
    "non-ASCII": "pdk_" + "A" * 42 + "é",
    "a newline": "pdk_" + "A" * 43 + "\n",
    "a NUL": "pdk_" + "A" * 42 + "\x00",
    "long": "pdk_" + "A" * 100_000,
}
ENGINEER = Principal(1, "engineer", False, frozenset({"predict"}), frozenset(), frozenset({1}), None)


def test_every_token_paddock_issues_is_well_formed() -> None:
    assert all(well_formed(ApiToken.generate()[0]) for _ in range(2000))
    assert well_formed(WELL_FORMED_UNKNOWN)


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_string_that_cannot_be_a_token_is_malformed(raw: str) -> None:
    assert not well_formed(raw)


@pytest.mark.parametrize(("raw", "lookups"), [(MALFORMED["short"], 0), (MALFORMED["long"], 0),
                                              (WELL_FORMED_UNKNOWN, 1)])
def test_the_management_api_looks_up_only_well_formed_tokens(db: Any, raw: str, lookups: int) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/api/v1/models/")
    assert response.status_code == 401 and response.json() == {"detail": "invalid token"}
    assert sum("console_apitoken" in query["sql"] for query in queries.captured_queries) == lookups


@pytest.mark.parametrize("raw", [MALFORMED["short"], MALFORMED["long"], MALFORMED["padding"], WELL_FORMED_UNKNOWN])
def test_the_data_plane_answers_a_malformed_token_as_an_unknown_one(served: Served, web_process: WebProcess,
                                                                     raw: str) -> None:
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": [0] * 8}]}).encode()
    status, _, payload = call(web_process.url, "POST", "/v2/models/iris/infer", body, raw)
    assert (status, json.loads(payload)) == (401, {"error": "invalid token"})


class CountingLoads:
    """A token cache's database, in memory: counts its lookups."""

    def __init__(self, principals: dict[str, Principal | str] | None = None) -> None:
        self.principals = principals or {}
        self.lookups: list[str] = []

    async def __call__(self, digest: str) -> Principal | str:
        self.lookups.append(digest)
        return self.principals.get(digest, "invalid token")


def token_cache(limit: int = 3, principals: dict[str, Principal | str] | None = None) -> tuple[TokenCache,
                                                                                                 CountingLoads]:
    tokens = TokenCache(failure_limit=limit)
    loads = CountingLoads(principals)
    tokens._cache.load = loads
    return tokens, loads


def refused(tokens: TokenCache, raw: str, client: str | None = None) -> tuple[str, str]:
    """The refusal's kind and message for `raw` from `client`."""
    try:
        asyncio.run(tokens.check(raw, client))
    except (Unauthenticated, TooManyRequests) as error:
        return error.kind, error.message
    raise AssertionError("accepted")


def test_a_malformed_token_is_refused_without_a_lookup_and_an_unknown_one_is_looked_up_once() -> None:
    tokens, loads = token_cache(limit=100)
    for raw in MALFORMED.values():
        assert refused(tokens, raw) == ("unauthorized", "invalid token")
    assert loads.lookups == []

    async def twice() -> None:
        for _ in range(2):
            with pytest.raises(Unauthenticated, match="^invalid token$"):
                await tokens.check(WELL_FORMED_UNKNOWN)

    asyncio.run(twice())
    assert len(loads.lookups) == 1  # the refusal is cached for the TTL like a principal


def test_an_address_past_its_failures_gets_429_unless_its_token_is_cached() -> None:
    known = ApiToken.generate()[0]
    tokens, loads = token_cache(limit=3, principals={hash_token(known): ENGINEER})
    throttled = ("too_many_requests", "too many failed authentications from this address (3 in 10 s); retry later")

    async def scenario() -> None:
        assert (await tokens.check(known, "203.0.113.7"))[1] == ENGINEER  # cached now
        for raw in [MALFORMED["short"], WELL_FORMED_UNKNOWN, "pdk_" + "B" * 43]:
            with pytest.raises(Unauthenticated):
                await tokens.check(raw, "203.0.113.7")
        before = len(loads.lookups)
        with pytest.raises(TooManyRequests) as error:
            await tokens.check("pdk_" + "C" * 43, "203.0.113.7")
        assert (error.value.kind, error.value.message) == throttled
        assert len(loads.lookups) == before  # no lookup for a throttled address
        assert (await tokens.check(known, "203.0.113.7"))[1] == ENGINEER  # a cached token still passes
        with pytest.raises(Unauthenticated):  # another address is not throttled
            await tokens.check("pdk_" + "C" * 43, "203.0.113.8")

    asyncio.run(scenario())
    assert tokens._cache.ttl + tokens._cache.stale == 1.0  # nothing served older than TOKEN_CACHE_SECONDS


def test_ipv6_failures_count_per_64_and_a_window_ends() -> None:
    limiter = FailureLimiter(limit=2, window=0.2)
    limiter.failed("2001:db8:1:2::1")
    limiter.failed("2001:db8:1:2:ffff::9")  # same /64
    assert limiter.blocked("2001:db8:1:2::abcd") and not limiter.blocked("2001:db8:1:3::1")
    assert not limiter.blocked("198.51.100.1") and not limiter.blocked(None)
    time.sleep(0.25)
    assert not limiter.blocked("2001:db8:1:2::1")


def test_the_failure_limiter_is_bounded() -> None:
    limiter = FailureLimiter(limit=1, max_addresses=100)
    for i in range(10_000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter.windows) == 100


def test_a_flood_of_unknown_keys_evicts_the_least_recently_used_never_the_keys_in_use() -> None:
    loads: list[str] = []

    async def load(key: str) -> str:
        loads.append(key)
        return key.upper()

    cache: RefreshingCache[str, str] = RefreshingCache(load, ttl=60, max_entries=100)

    async def flood() -> None:
        assert await cache.get("hot") == "HOT"
        for i in range(10_000):
            await cache.get(f"unknown-{i}")
            if i % 50 == 0:
                assert await cache.get("hot") == "HOT"

    asyncio.run(flood())
    assert loads.count("hot") == 1  # never evicted, never cleared
    assert len(cache.entries) == 100 and "hot" in cache.entries


def test_the_cache_evicts_in_least_recently_used_order() -> None:
    async def load(key: str) -> str:
        return key

    cache: RefreshingCache[str, str] = RefreshingCache(load, ttl=60, max_entries=3)

    async def fill() -> None:
        for key in ["a", "b", "c"]:
            await cache.get(key)
        await cache.get("a")  # used: b is now the least recent
        await cache.get("d")

    asyncio.run(fill())
    assert list(cache.entries) == ["c", "a", "d"]
