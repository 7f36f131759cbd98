"""The console's model list: a page of 25 models at a time, sorted by name, team, number of
versions or last update (either way), through Django's test client; the page and its htmx
fragment. (Its query budget is in tests/console/test_queries.py.)"""

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from console.models import Membership, Team
from registry.models import ModelVersion, RegisteredModel
from registry.views import MODELS_PER_PAGE

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


def add_versions(model: RegisteredModel, count: int) -> None:
    """Version rows only (no artifact is read by the list)."""
    for number in range(1, count + 1):
        ModelVersion.objects.create(model=model, number=number, artifact=f"models/{model.name}/{number}/m.onnx",
                                    original_filename="m.onnx", sha256=f"{number:064x}", size=1, format="onnx")


@pytest.fixture
def engineer(cast: dict[str, Any]) -> Client:
    client = Client()
    client.force_login(cast["engineer"])
    return client


@pytest.fixture
def four(teams: dict[str, Team], cast: dict[str, Any]) -> list[str]:
    """Four models the engineer sees, each differing in every sortable column, and one of
    another team the engineer does not see."""
    alpha = Team.objects.create(name="alpha")  # sorts before "ml"
    Membership.objects.create(team=alpha, user=cast["engineer"], role="viewer")
    now = timezone.now()
    rows = [("bravo", teams["ml"], 3, 2), ("alder", teams["ml"], 1, 3), ("delta", alpha, 0, 1),
            ("charlie", teams["ml"], 2, 0)]  # name, team, versions, hours since its last update
    for name, team, versions, hours in rows:
        model = RegisteredModel.objects.create(name=name, team=team)
        add_versions(model, versions)
        RegisteredModel.objects.filter(pk=model.pk).update(updated_at=now - timedelta(hours=hours))
    RegisteredModel.objects.create(name="aaa-hidden", team=teams["other"])
    return [name for name, *_ in rows]


def listed(html: str) -> list[str]:
    """The models in the table, in order."""
    return re.findall(r'<tr data-model="([^"]+)">', html)


@pytest.mark.parametrize(("sort", "expected"), [
    ("name", ["alder", "bravo", "charlie", "delta"]),
    ("-name", ["delta", "charlie", "bravo", "alder"]),
    ("team", ["delta", "alder", "bravo", "charlie"]),  # alpha, then ml (by name within a team)
    ("-team", ["alder", "bravo", "charlie", "delta"]),
    ("versions", ["delta", "alder", "charlie", "bravo"]),
    ("-versions", ["bravo", "charlie", "alder", "delta"]),
    ("updated", ["alder", "bravo", "delta", "charlie"]),  # the oldest update first
    ("-updated", ["charlie", "delta", "bravo", "alder"]),
])
def test_it_sorts_by_each_column_either_way(engineer: Client, four: list[str], sort: str,
                                            expected: list[str]) -> None:
    for headers in ({}, HTMX):
        response = engineer.get("/models/", {"sort": sort}, headers=headers)
        assert response.status_code == 200
        assert listed(response.content.decode()) == expected


@pytest.mark.parametrize("sort", ["", "password", "-", "team__memberships__user", "--name", "name;drop"])
def test_an_unknown_sort_is_ignored_for_the_default_by_name(engineer: Client, four: list[str], sort: str) -> None:
    response = engineer.get("/models/", {"sort": sort})
    assert response.status_code == 200
    html = response.content.decode()
    assert listed(html) == ["alder", "bravo", "charlie", "delta"]
    assert '<th aria-sort="ascending"><a class="sort" href="?sort=-name"' in html


def test_a_header_link_asks_for_the_other_direction_of_the_sort_in_effect(engineer: Client, four: list[str]) -> None:
    html = engineer.get("/models/?q=a&sort=-versions&page=2").content.decode()
    headers = re.findall(r'<th aria-sort="(\w+)"><a class="sort" href="\?([^"]+)"', html)
    # Name, Team, Versions, Updated: a new order keeps the search and starts at page 1; versions
    # and updates sort the most (the newest) first.
    assert headers == [("none", "q=a&amp;sort=name"), ("none", "q=a&amp;sort=team"),
                       ("descending", "q=a&amp;sort=versions"), ("none", "q=a&amp;sort=-updated")]


def test_the_list_shows_a_page_of_models_and_the_next_page_the_rest(
        engineer: Client, teams: dict[str, Team]) -> None:
    RegisteredModel.objects.bulk_create(RegisteredModel(name=f"m{n:02d}", team=teams["ml"])
                                        for n in range(MODELS_PER_PAGE + 5))
    first = engineer.get("/models/").content.decode()
    assert listed(first) == [f"m{n:02d}" for n in range(MODELS_PER_PAGE)]
    assert f"Page 1 of 2 ({MODELS_PER_PAGE + 5} models)" in first
    assert '<a rel="next" href="?page=2"' in first and 'rel="prev"' not in first

    second = engineer.get("/models/", {"page": "2", "sort": "-name"}, headers=HTMX)
    assert second.status_code == 200
    html = second.content.decode()
    assert "<html" not in html  # the fragment only, its pages included
    assert listed(html) == [f"m{n:02d}" for n in reversed(range(5))]
    assert '<a rel="prev" href="?page=1&amp;sort=-name"' in html and 'rel="next"' not in html
    assert f"Page 2 of 2 ({MODELS_PER_PAGE + 5} models)" in html


@pytest.mark.parametrize(("page", "shown"), [("99", "Page 2 of 2"), ("zero", "Page 1 of 2"), ("-1", "Page 2 of 2")])
def test_a_page_out_of_range_shows_the_nearest_page(engineer: Client, teams: dict[str, Team], page: str,
                                                    shown: str) -> None:
    RegisteredModel.objects.bulk_create(RegisteredModel(name=f"m{n:02d}", team=teams["ml"])
                                        for n in range(MODELS_PER_PAGE + 1))
    response = engineer.get("/models/", {"page": page})
    assert response.status_code == 200 and shown in response.content.decode()


def test_a_search_narrows_the_pages_and_a_single_page_has_no_page_links(engineer: Client, four: list[str]) -> None:
    html = engineer.get("/models/", {"q": "ar"}, headers=HTMX).content.decode()
    assert listed(html) == ["charlie"]
    assert 'class="pages"' not in html
