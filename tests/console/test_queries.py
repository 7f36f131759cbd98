"""Query budgets of the console's pages: each runs a small, fixed number of queries however many
models the person sees, so an N+1 fails its budget (NetBox's query counts, in spirit)."""

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from console.audit import Actor
from registry import services
from serving.rollouts import start_rollout
from tests.conftest import ready_version

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
# Queries per request, the session's and the user's included.
BUDGETS = {
    "/models/": 6,  # the page of models and their count (for the pages), their versions, their aliases with the version
    "/dashboard/": 9,  # models with live rollouts (2), their routes (3), stream bindings, live jobs
    "/models/m01/": 11,  # model, versions + aliases, route (3), rollout + timeline, the engineer's role
    "/models/m01/traffic/": 9,  # polled every 2 s: model, route (3), rollout + timeline, the engineer's role
}
# An admin's whole pages also count the rollouts awaiting approval, for the navigation's badge
# (console/context_processors.py); fragments (the traffic panel) do not show it and run no query for it.
ADMIN_PAGE_EXTRA = 1


@pytest.fixture
def add_models(cast: dict[str, Any], teams: dict[str, Any]) -> Callable[[int], None]:
    """Adds models of team ml with two ready versions and a champion each; every other one also
    has a deployment on v1 and a canary of v2 under way, the rest are served by their champion."""
    actor = Actor(user=cast["engineer"])
    count = 0

    def add(how_many: int) -> None:
        nonlocal count
        for _ in range(how_many):
            model = services.create_model(actor=actor, name=f"m{count:02d}", team=teams["ml"], tags=["tabular"])
            champion = ready_version(model, 1)
            ready_version(model, 2)
            services.set_alias(actor=actor, model=model, name="champion", version=champion)
            if count % 2:
                start_rollout(actor=actor, model=model, candidate=2, strategy="canary", steps=[50, 100])
            count += 1

    return add


@pytest.fixture
def engineer(cast: dict[str, Any]) -> Client:
    client = Client()
    client.force_login(cast["engineer"])
    return client


def queries(client: Client, url: str, assert_max_queries: Any, headers: dict[str, str] | None = None,
            extra: int = 0) -> int:
    """Gets `url` within its budget (plus `extra`); returns how many queries it ran."""
    with assert_max_queries(BUDGETS[url] + extra) as captured:
        response = client.get(url, headers=headers)
    assert response.status_code == 200
    assert b"m01" in response.content  # the page shows the models, not an empty state
    return len(captured)


@pytest.mark.parametrize("url", ["/models/", "/dashboard/"])
@pytest.mark.parametrize("headers", [{}, HTMX], ids=["page", "fragment"])
def test_a_list_runs_the_same_queries_for_3_models_as_for_12(
        url: str, headers: dict[str, str], add_models: Any, engineer: Client,
        django_assert_max_num_queries: Any) -> None:
    add_models(3)
    few = queries(engineer, url, django_assert_max_num_queries, headers)
    add_models(9)
    assert queries(engineer, url, django_assert_max_num_queries, headers) == few


@pytest.mark.parametrize("url", ["/models/m01/", "/models/m01/traffic/"])
def test_the_model_page_and_its_traffic_panel_stay_within_budget(
        url: str, add_models: Any, engineer: Client, django_assert_max_num_queries: Any) -> None:
    add_models(12)
    queries(engineer, url, django_assert_max_num_queries, HTMX)
    queries(engineer, url, django_assert_max_num_queries)


def test_an_admin_sees_every_model_within_the_same_budgets(
        add_models: Any, cast: dict[str, Any], django_assert_max_num_queries: Any) -> None:
    add_models(12)
    admin = Client()
    admin.force_login(cast["admin"])
    for url in BUDGETS:
        queries(admin, url, django_assert_max_num_queries, extra=0 if url.endswith("/traffic/") else ADMIN_PAGE_EXTRA)


def test_the_dashboard_shows_each_model_once_with_its_live_rollout(add_models: Any, engineer: Client) -> None:
    add_models(4)
    html = engineer.get("/dashboard/").content.decode()
    assert [html.count(f'data-model="m{n:02d}"') for n in range(4)] == [1, 1, 1, 1]
    assert html.count("canary → v2") == 2  # m01 and m03
