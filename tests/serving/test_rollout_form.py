"""The model page's rollout form through Django's test client: it offers only versions a rollout
may go to, its gates have readable labels and help, and what it sends is read as the form meant
it (the browser's view of its refusals is tests/e2e/test_form_errors.py)."""

import re
from typing import Any

import pytest
from django.test import Client

from console.audit import Actor
from serving.forms import GATE_FIELDS
from serving.models import GATE_DEFAULTS, Rollout
from serving.rollouts import start_rollout
from tests.conftest import ready_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def engineer(cast: dict[str, Any]) -> Client:
    client = Client()
    client.force_login(cast["engineer"])
    return client


def candidates(html: str) -> list[str]:
    form = html[html.index('id="rollout-form"'):]
    select = form[form.index('<select name="candidate">'):form.index("</select>")]
    return re.findall(r'<option value="(\d+)">', select)


def test_the_candidates_leave_out_the_version_that_serves_now(engineer: Client, iris: Any,
                                                              cast: dict[str, Any]) -> None:
    ready_version(iris, 3)
    assert candidates(engineer.get("/models/iris/").content.decode()) == ["3", "2"]  # v1 serves
    start_rollout(actor=Actor(user=cast["engineer"]), model=iris, candidate=2, strategy="direct")
    assert candidates(engineer.get("/models/iris/").content.decode()) == ["3", "1"]  # now v2 does


def test_a_model_whose_only_ready_version_serves_has_no_rollout_form(engineer: Client, iris: Any) -> None:
    iris.versions.filter(number=2).update(status="failed")
    html = engineer.get("/models/iris/").content.decode()
    assert 'id="rollout-form"' not in html and 'data-version="1" data-weight="100.0"' in html


def test_every_gate_has_a_field_with_a_readable_label_and_its_help(engineer: Client, iris: Any) -> None:
    assert sorted(gate.name for gate in GATE_FIELDS) == sorted(GATE_DEFAULTS)
    html = engineer.get("/models/iris/").content.decode()
    for gate in GATE_FIELDS:
        assert f'<label for="gate-{gate.name}">{gate.label}</label>' in html
        assert f'aria-describedby="gate-{gate.name}-help"' in html
        assert f'<span class="helptext" id="gate-{gate.name}-help">{gate.help}</span>' in html.replace("&#x27;", "'")
        assert f'placeholder="{gate.default}"' in html
    labels = {gate.name: gate.label for gate in GATE_FIELDS}
    assert labels["max_p99_ratio"] == "Max p99 ratio" and labels["max_error_rate"] == "Max error rate"
    assert labels["min_requests"] == "Min requests"
    assert "Maxp99Ratio" not in html and "Maxp99ratio" not in html


def test_a_gate_that_is_not_a_number_is_refused_by_its_label(engineer: Client, iris: Any) -> None:
    refused = engineer.post("/models/iris/rollouts/start/", {"candidate": 2, "strategy": "canary",
                                                             "max_p99_ratio": "fast"})
    assert refused.status_code == 400
    assert "Max p99 ratio must be a number" in refused.content.decode()
    assert not Rollout.objects.exists()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("candidate", "two", "candidate must be a whole number"),
    ("step_seconds", "inf", "step seconds must be a whole number"),
    ("step_seconds", "1.5", "step seconds must be a whole number"),
])
def test_a_candidate_or_step_that_is_not_a_whole_number_is_refused(engineer: Client, iris: Any, field: str,
                                                                    value: str, message: str) -> None:
    refused = engineer.post("/models/iris/rollouts/start/", {"candidate": 2, "strategy": "canary", field: value})
    assert refused.status_code == 400
    assert message in refused.content.decode()
    assert not Rollout.objects.exists()


@pytest.mark.parametrize(("sent", "auto_promote"), [(["off"], False), (["off", "on"], True), ([], True)])
def test_the_auto_promote_box_is_heard_checked_or_not(engineer: Client, iris: Any, sent: list[str],
                                                      auto_promote: bool) -> None:
    # The form sends "off" before the box (an unchecked box sends nothing); a caller that
    # sends neither gets the default, on.
    fields: dict[str, Any] = {"candidate": 2, "strategy": "shadow", "steps": "10"}
    if sent:
        fields["auto_promote"] = sent
    started = engineer.post("/models/iris/rollouts/start/", fields)
    assert started.status_code == 200, started.content.decode()
    assert Rollout.objects.get().auto_promote is auto_promote
