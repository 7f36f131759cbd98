"""The route says where its active version came from (the deployment or the champion alias), so
the model's traffic panel, refreshed every 2 s, says why a version serves without a query of
its own."""

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from console.audit import Actor
from registry import services
from registry.models import ModelVersion
from serving.models import Rollout
from serving.services import configure_deployment
from serving.v2.routes import load_model_route
from serving.views import serving_reason
from tests.conftest import ready_version

pytestmark = pytest.mark.django_db


def panel(client: Client) -> tuple[str, int]:
    """The traffic panel's sentence and how many queries the refresh ran."""
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/models/iris/traffic/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    return html[html.index('class="serving-reason"'):].split("</p>")[0], len(captured)


def test_the_route_says_whether_the_deployment_or_the_champion_chose_its_version(
        cast: dict[str, Any], teams: dict[str, Any]) -> None:
    model = services.create_model(actor=Actor(user=cast["engineer"]), name="iris", team=teams["ml"])
    route = load_model_route("iris")
    assert route is not None and (route.active, route.active_from) == (None, None)
    ready_version(model, 1)
    ready_version(model, 2)
    route = load_model_route("iris")
    assert route is not None and (route.active, route.active_from) == (1, "champion")
    configure_deployment(actor=Actor(user=cast["engineer"]), model=model, changes={"active_version": 2})
    route = load_model_route("iris")
    assert route is not None and (route.active, route.active_from) == (2, "deployment")


def test_the_traffic_panel_says_why_a_version_serves_in_the_same_queries_whatever_the_reason(
        cast: dict[str, Any], teams: dict[str, Any]) -> None:
    model = services.create_model(actor=Actor(user=cast["engineer"]), name="iris", team=teams["ml"])
    client = Client()
    client.force_login(cast["engineer"])
    nothing, nothing_queries = panel(client)
    assert "Serving nothing" in nothing and "no version serves" in nothing
    ready_version(model, 1)
    ready_version(model, 2)
    champion, champion_queries = panel(client)
    assert "Serving v1:" in champion and "v1 carries the champion alias" in champion
    configure_deployment(actor=Actor(user=cast["engineer"]), model=model, changes={"active_version": 2})
    deployed, deployed_queries = panel(client)
    assert "Serving v2:" in deployed and "the deployment names v2 (promoted)" in deployed
    # The reason comes from the route already read: no query to ask the deployment again.
    assert champion_queries == nothing_queries and deployed_queries == nothing_queries


@pytest.mark.parametrize(("strategy", "sentence"), [
    ("canary", "a canary rollout is moving traffic from v1 to v2"),
    ("blue_green", "a blue/green rollout is moving traffic from v1 to v2"),
    ("ab", "an A/B rollout is moving traffic from v1 to v2"),
    ("shadow", "v1 serves; a shadow rollout mirrors its requests to v2"),
])
def test_a_rollout_is_named_by_its_strategy_in_the_sentence(strategy: str, sentence: str) -> None:
    rollout = Rollout(strategy=strategy, stable_version=ModelVersion(number=1),
                      candidate_version=ModelVersion(number=2))
    assert serving_reason(None, rollout) == sentence
