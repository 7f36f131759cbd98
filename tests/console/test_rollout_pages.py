"""The console's traffic panel, rollout form and buttons, and the dashboard, through Django's
test client (the browser journey is tests/e2e/test_rollout_journey.py)."""

from typing import Any

import pytest
from django.test import Client

from serving.models import Rollout
from tests.conftest import PASSWORD


def signed_in(who: str) -> Client:
    client = Client()
    assert client.login(username=who, password=PASSWORD)
    return client


@pytest.mark.django_db
def test_model_page_shows_the_split_and_the_rollout_form(iris: Any) -> None:
    page = signed_in("engineer").get("/models/iris/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-version="1" data-weight="100.0"' in html
    assert 'id="rollout-form"' in html and 'id="live-charts"' in html
    assert 'id="rollout-form"' not in signed_in("viewer").get("/models/iris/").content.decode()


@pytest.mark.django_db
def test_the_panel_answers_a_refusal_with_the_status_of_its_kind(iris: Any) -> None:
    viewer = signed_in("viewer").post("/models/iris/rollouts/start/", {"candidate": 2, "strategy": "canary"})
    assert viewer.status_code == 403
    assert "the engineer role in team &#x27;ml&#x27; is required to change this model" in viewer.content.decode()
    unknown = signed_in("engineer").post("/models/iris/rollouts/start/", {"candidate": 9, "strategy": "canary"})
    assert unknown.status_code == 404, unknown.content.decode()


@pytest.mark.django_db
def test_start_from_the_form_then_pause_and_roll_back(iris: Any) -> None:
    engineer = signed_in("engineer")
    refused = engineer.post("/models/iris/rollouts/start/", {"candidate": 2, "strategy": "canary",
                                                              "steps": "50, 10", "step_seconds": 30})
    assert refused.status_code == 400 and "canary steps must increase, e.g. [10, 50, 100]" in refused.content.decode()
    started = engineer.post("/models/iris/rollouts/start/", {
        "candidate": 2, "strategy": "canary", "steps": "25, 100", "step_seconds": 30, "min_requests": "20"})
    assert started.status_code == 200, started.content.decode()
    html = started.content.decode()
    assert 'data-state="running"' in html and "Warming v2 on the workers before it takes traffic" in html
    assert "v2 held warm (standby)" in html
    rollout = Rollout.objects.get()
    assert rollout.gate_settings["min_requests"] == 20 and rollout.steps == [25, 100]
    viewer = signed_in("viewer").post(f"/models/iris/rollouts/{rollout.pk}/pause/")
    assert "the engineer role in team &#x27;ml&#x27; is required" in viewer.content.decode()
    paused = engineer.post(f"/models/iris/rollouts/{rollout.pk}/pause/")
    assert 'data-state="paused"' in paused.content.decode()
    back = engineer.post(f"/models/iris/rollouts/{rollout.pk}/rollback/").content.decode()
    assert 'data-state="rolled_back"' in back and "rolled back by engineer" in back
    assert 'data-version="1" data-weight="100.0"' in back


@pytest.mark.django_db
def test_dashboard_lists_visible_models_only(iris: Any) -> None:
    html = signed_in("engineer").get("/dashboard/").content.decode()
    assert 'data-model="iris"' in html and 'id="dashboard-workers"' in html
    assert 'data-model="iris"' not in signed_in("outsider").get("/dashboard/").content.decode()


@pytest.mark.django_db
def test_dashboard_answers_its_htmx_poll_with_its_body_only(iris: Any) -> None:
    client = signed_in("engineer")
    body = client.get("/dashboard/", headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in body and 'data-model="iris"' in body and 'id="dashboard-workers"' in body
    boosted = client.get("/dashboard/", headers={"HX-Request": "true", "HX-Boosted": "true"}).content.decode()
    assert "<html" in boosted and 'id="dashboard"' in boosted


@pytest.mark.django_db
def test_the_live_tables_row_template_sits_beside_its_header_a_cell_per_column(iris: Any) -> None:
    html = signed_in("viewer").get("/models/iris/").content.decode()
    start = html.index('id="live-table"')
    table = html[start:html.index("</table>", start)]
    assert '<template id="live-row"><tr>' in table
    assert table.count("<th>") == table.count('<td data-field="') == 12
