"""One tenant's view of what the workers hold: another team's model names, and the hosts and pids
the workers run on, are not in what an outsider or an engineer reads (issue 20 item 8)."""

import json
import urllib.request
from typing import Any

from django.test import Client

from console.audit import Actor
from console.services import create_token
from tests.conftest import PASSWORD
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
