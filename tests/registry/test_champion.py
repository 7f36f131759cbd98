"""Uploading never changes what serves: a model's first ready version becomes its `champion`
(audited), a later one serves only when a person promotes it, and a model that served its
newest ready version before the upgrade keeps serving it (migration serving 0007 crowns it)."""

from importlib import import_module
from typing import Any

import pytest
from django.apps import apps as django_apps

from console.audit import Actor
from console.models import AuditEvent
from registry import services
from registry.models import Alias, RegisteredModel
from serving.models import Deployment
from serving.services import configure_deployment
from serving.v2.routes import load_model_route
from tests.conftest import ready_version

CROWNING = "0007_champion_for_models_served_by_newest"


def new_model(cast: dict[str, Any], teams: dict[str, Any], name: str) -> RegisteredModel:
    return services.create_model(actor=Actor(user=cast["engineer"]), name=name, team=teams["ml"])


def serving(name: str) -> int | None:
    route = load_model_route(name)
    assert route is not None
    return route.active


def champion_of(model: RegisteredModel) -> int | None:
    return Alias.objects.filter(model=model, name="champion").values_list("version__number", flat=True).first()


@pytest.mark.django_db
def test_the_first_ready_version_becomes_champion_and_serves(cast: dict[str, Any], teams: dict[str, Any]) -> None:
    model = new_model(cast, teams, "iris")
    assert serving("iris") is None  # nothing ready: nothing serves
    ready_version(model, 1)
    assert champion_of(model) == 1
    assert serving("iris") == 1
    event = AuditEvent.objects.filter(action="alias.set").get()
    assert (event.actor_username, event.before, event.after) == (
        "tests", None, {"alias": "champion", "version": 1, "reason": "the model's first ready version"})


@pytest.mark.django_db
def test_a_later_version_does_not_serve_until_it_is_promoted(cast: dict[str, Any], teams: dict[str, Any]) -> None:
    model = new_model(cast, teams, "iris")
    ready_version(model, 1)
    two = ready_version(model, 2)
    assert (champion_of(model), serving("iris")) == (1, 1)  # v2 is newer, v1 still serves
    assert AuditEvent.objects.filter(action="alias.set").count() == 1
    services.set_alias(actor=Actor(user=cast["engineer"]), model=model, name="champion", version=two)
    assert serving("iris") == 2


@pytest.mark.django_db
def test_without_a_champion_nothing_serves_and_a_new_version_does_not_take_over(
        cast: dict[str, Any], teams: dict[str, Any]) -> None:
    model = new_model(cast, teams, "iris")
    ready_version(model, 1)
    services.delete_alias(actor=Actor(user=cast["engineer"]), alias=Alias.objects.get(model=model))
    ready_version(model, 2)  # not the first ready version: not crowned
    assert (champion_of(model), serving("iris")) == (None, None)


@pytest.mark.django_db
def test_the_deployment_names_what_serves_before_the_champion(cast: dict[str, Any], teams: dict[str, Any]) -> None:
    model = new_model(cast, teams, "iris")
    ready_version(model, 1)
    ready_version(model, 2)
    configure_deployment(actor=Actor(user=cast["engineer"]), model=model, changes={"active_version": 2})
    assert (champion_of(model), serving("iris")) == (1, 2)


@pytest.mark.django_db
def test_the_upgrade_crowns_what_each_model_served(cast: dict[str, Any], teams: dict[str, Any]) -> None:
    # As Paddock left them before: `newest` served v2 (no champion, no deployment), `crowned`
    # served its champion v1, `pinned` served its deployment's v1. The migration's function runs
    # on today's models (migrating the schema back and forth would drop other apps' tables that
    # depend on serving's, under the session's worker).
    models = {name: new_model(cast, teams, name) for name in ("newest", "crowned", "pinned")}
    for model in models.values():
        ready_version(model, 1)
        ready_version(model, 2)
    Alias.objects.filter(model__name__in=["newest", "pinned"]).delete()
    pinned = models["pinned"]
    Deployment.objects.create(model=pinned, active_version=pinned.versions.get(number=1))
    import_module(f"serving.migrations.{CROWNING}").crown_what_served(django_apps, None)
    assert {name: champion_of(model) for name, model in models.items()} == {"newest": 2, "crowned": 1, "pinned": None}
    assert {name: serving(name) for name in models} == {"newest": 2, "crowned": 1, "pinned": 1}


@pytest.mark.django_db
def test_the_model_page_says_which_version_serves_and_why(cast: dict[str, Any], teams: dict[str, Any],
                                                          client: Any) -> None:
    model = new_model(cast, teams, "iris")
    client.force_login(cast["engineer"])

    def reason() -> str:
        page = client.get("/models/iris/").content.decode()
        return page[page.index('class="serving-reason"'):].split("</p>")[0]

    assert "Serving nothing" in reason() and "no version serves" in reason()
    ready_version(model, 1)
    ready_version(model, 2)
    assert "Serving v1:" in reason() and "v1 carries the champion alias" in reason()
    configure_deployment(actor=Actor(user=cast["engineer"]), model=model, changes={"active_version": 2})
    assert "Serving v2:" in reason() and "the deployment names v2 (promoted)" in reason()
