"""One tenant's view of what the workers hold: another team's model names, and the hosts and pids
the workers run on, are not in what an outsider or an engineer reads (issue 20 item 8)."""

import json
import re
import urllib.error
import urllib.request
from typing import Any

from django.test import Client

from console.audit import Actor
from console.services import create_token
from tests.conftest import PASSWORD, wait_until
from tests.integration.test_serving import infer_json, x_input
from tests.security.conftest import Served, WebProcess


def workers_as(web: WebProcess, token: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(f"{web.url}/api/v1/workers/", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return json.load(response)


def token_of(user: Any, *scopes: str) -> str:
    return create_token(actor=Actor.system("tests"), user=user, name="t", scopes=list(scopes))[1]


def test_the_workers_api_shows_each_caller_only_its_own_models(served: Served, web_process: WebProcess,
                                                                 cast: dict[str, Any]) -> None:
    admin = workers_as(web_process, token_of(cast["admin"], "admin"))
    real_names = {worker["name"] for worker in admin}
    assert any(v["model"] == "iris" for w in admin for v in w["versions"])
    assert all(w["host"] and w["pid"] for w in admin)
    engineer = workers_as(web_process, token_of(cast["engineer"], "read"))
    assert any(v["model"] == "iris" for w in engineer for v in w["versions"])
    outsider = workers_as(web_process, token_of(cast["outsider"], "read"))
    assert len(outsider) == len(admin)  # that workers exist is no secret; what they hold and where is
    for seen in (engineer, outsider):
        assert all(w["host"] is None and w["pid"] is None and w["gpus"] == [] for w in seen)
        assert {w["name"] for w in seen}.isdisjoint(real_names)
        assert all(w["name"].startswith("worker-") for w in seen)
    assert [v for w in outsider for v in w["versions"]] == []
    # A superuser's narrow token is not an admin's: it sees what its scopes and models allow.
    narrow = workers_as(web_process, token_of(cast["admin"], "read"))
    assert all(w["host"] is None for w in narrow)


def test_the_dashboard_shows_an_outsider_neither_other_teams_models_nor_hosts(served: Served,
                                                                                cast: dict[str, Any]) -> None:
    outsider, admin = Client(), Client()
    assert outsider.login(username="outsider", password=PASSWORD)
    assert admin.login(username="admin", password=PASSWORD)
    admin_page = admin.get("/dashboard/").content.decode()
    assert "iris v1" in admin_page and "Host / pid" in admin_page
    page = outsider.get("/dashboard/").content.decode()
    assert "iris" not in page and "Host / pid" not in page
    assert 'id="dashboard-workers"' in page


def metrics_as(web: WebProcess, token: str) -> tuple[int, str]:
    request = urllib.request.Request(f"{web.url}/metrics", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def test_metrics_show_each_token_only_its_models_and_scrapers_everything(
        served: Served, web_process: WebProcess, cast: dict[str, Any]) -> None:
    status, _, _ = infer_json(web_process.url, served.token, "iris", {"inputs": [x_input([1, 8])]})
    assert status == 200
    wait_until(lambda: 'worker="' in metrics_as(web_process, token_of(cast["admin"], "metrics"))[1], timeout=10)
    status, scraper = metrics_as(web_process, token_of(cast["admin"], "metrics"))
    real_workers = set(re.findall(r'worker="([^"]*)"', scraper))
    assert status == 200 and 'model="iris"' in scraper and real_workers
    assert not any(name.startswith("worker-") for name in real_workers)
    status, engineer = metrics_as(web_process, token_of(cast["engineer"], "read"))
    assert status == 200 and 'paddock_worker_version_loaded{model="iris"' in engineer
    status, outsider = metrics_as(web_process, token_of(cast["outsider"], "read"))
    assert status == 200 and 'model="iris"' not in outsider
    for seen in (engineer, outsider):  # workers named opaquely: their names carry host and pid
        named = set(re.findall(r'worker="([^"]*)"', seen))
        assert named and named.isdisjoint(real_workers) and all(n.startswith("worker-") for n in named)
    assert "paddock_inference_requests_total" in outsider  # the families are there, not other teams' series
    status, body = metrics_as(web_process, token_of(cast["outsider"], "predict"))
    assert (status, json.loads(body)) == (403, {"error": "token lacks the 'read' scope"})


def test_only_admins_hold_the_metrics_scope(cast: dict[str, Any], client_for: Any) -> None:
    response = client_for("engineer", "read", "manage").post(
        "/api/v1/tokens/", {"name": "scraper", "scopes": ["metrics"]}, format="json")
    assert (response.status_code, response.json()) == (
        403, {"detail": "only admins can hold tokens with the 'metrics' scope"})
