"""Rollout rules that need no processes: refusals with their exact messages, the traffic each
step sets, people's controls and who may use them. Gates and real traffic are in
tests/integration/test_rollouts.py."""

from typing import Any

import pytest

from console.audit import Actor
from console.errors import Conflict
from console.models import AuditEvent
from serving import rollouts
from serving.models import Deployment, Rollout
from serving.services import delete_deployment


def start(client: Any, **body: Any) -> Any:
    return client.post("/api/v1/models/iris/rollouts/", body, format="json")


@pytest.mark.django_db
def test_canary_sets_its_first_step_and_records_it(iris: Any, client_for: Any) -> None:
    response = start(client_for("engineer"), candidate=2, strategy="canary", steps=[10, 50], step_seconds=5)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["steps"] == [10, 50, 100] and body["state"] == "running" and body["stable_version"] == 1
    # First the candidate is warmed on the workers, with no traffic...
    deployment = Deployment.objects.get(model=iris)
    assert body["step_index"] == -1 and deployment.snapshot()["standby_version"] == 2 and deployment.routes == []
    # ...then (the beat sees it held: tests/integration) its first step.
    rollouts.tick(body["id"])
    assert Rollout.objects.get(pk=body["id"]).step_index == -1  # no worker holds it here: still warming
    rollouts._enter_step(Actor.system("tests"), Rollout.objects.get(pk=body["id"]), deployment, 0)
    deployment.refresh_from_db()
    assert deployment.routes == [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]
    assert deployment.standby_version is None
    events = Rollout.objects.get(pk=body["id"]).events.values_list("kind", flat=True)
    assert list(events) == ["start", "step", "step"]
    actions = AuditEvent.objects.filter(action__startswith="rollout.").order_by("id").values_list("action", flat=True)
    assert list(actions) == ["rollout.start", "rollout.step", "rollout.step"]


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "status", "message"), [
    ({"candidate": 9, "strategy": "canary"}, 404, "model 'iris' has no version 9"),
    ({"candidate": 1, "strategy": "canary"}, 400, "version 1 already serves model 'iris'"),
    ({"candidate": 2, "strategy": "canary", "steps": [50, 10]}, 400, "canary steps must increase, e.g. [10, 50, 100]"),
    ({"candidate": 2, "strategy": "ab", "steps": [100]}, 400,
     "an A/B split keeps some traffic on the stable version: share below 100"),
    ({"candidate": 2, "strategy": "canary", "gates": {"p50": 3}}, 400,
     "unknown gate(s): p50; known: max_error_rate, max_p99_ratio, p99_tolerance_ms, max_compute_ratio, "
     "confidence, min_shadow_agreement, min_requests, window_seconds"),
    ({"candidate": 2, "strategy": "canary", "gates": {"confidence": 1}}, 400,
     "gate 'confidence' must be at least 0.5 and below 1 (e.g. 0.999)"),
    ({"candidate": 2, "strategy": "ab", "sticky_by": "header"}, 400, "sticky_by and sticky_key go together"),
])
def test_refusals(iris: Any, client_for: Any, body: dict[str, Any], status: int, message: str) -> None:
    response = start(client_for("engineer"), **body)
    assert response.status_code == status
    assert message in str(response.json())
    assert not Rollout.objects.exists()


@pytest.mark.django_db
def test_preferred_batch_sizes_are_bounded_like_max_batch_size(iris: Any, client_for: Any) -> None:
    api = client_for("engineer")
    huge = api.patch("/api/v1/deployments/iris/", {"preferred_batch_sizes": [2**70]}, format="json")
    assert huge.status_code == 400
    assert huge.json() == {"preferred_batch_sizes": {"0": ["Ensure this value is less than or equal to 4096."]}}
    many = api.patch("/api/v1/deployments/iris/", {"preferred_batch_sizes": list(range(1, 40))}, format="json")
    assert many.status_code == 400
    assert many.json() == {"preferred_batch_sizes": ["Ensure this field has no more than 32 elements."]}


@pytest.mark.django_db
def test_one_live_rollout_per_model_and_no_hand_set_traffic_meanwhile(iris: Any, client_for: Any) -> None:
    api = client_for("engineer")
    first = start(api, candidate=2, strategy="shadow").json()
    second = start(api, candidate=2, strategy="canary")
    assert second.status_code == 409
    assert second.json()["detail"] == (f"model 'iris' already has a running shadow rollout (id {first['id']}): "
                                      "promote or roll it back first")
    hand = api.patch("/api/v1/deployments/iris/", {"routes": [{"version": 2, "weight": 100}]}, format="json")
    assert hand.status_code == 409
    assert hand.json()["detail"] == ("a rollout of model 'iris' is live and owns its traffic: "
                                    "promote or roll it back first")


@pytest.mark.django_db
def test_hand_set_routes_are_checked(iris: Any, client_for: Any) -> None:
    api = client_for("engineer")
    bad = api.patch("/api/v1/deployments/iris/", {"routes": [{"version": 1, "weight": 60},
                                                             {"version": 2, "weight": 30}]}, format="json")
    assert bad.status_code == 400 and bad.json()["detail"] == "route weights must sum to 100, not 90"
    good = api.patch("/api/v1/deployments/iris/", {"routes": [{"version": 1, "weight": 70},
                                                              {"version": 2, "weight": 30}],
                                                   "sticky_by": "header", "sticky_key": "x-user"}, format="json")
    assert good.status_code == 200 and good.json()["routes"][1] == {"version": 2, "weight": 30}


@pytest.mark.django_db
def test_controls_pause_resume_rollback_and_who_may_use_them(iris: Any, client_for: Any) -> None:
    engineer, viewer = client_for("engineer"), client_for("viewer")
    rollout = start(engineer, candidate=2, strategy="canary").json()
    base = f"/api/v1/models/iris/rollouts/{rollout['id']}"
    assert viewer.post(f"{base}/pause/").status_code == 403
    assert engineer.post(f"{base}/pause/").json()["state"] == "paused"
    assert engineer.post(f"{base}/pause/").json()["detail"] == f"rollout {rollout['id']} is paused, not running"
    assert engineer.post(f"{base}/resume/").json()["state"] == "running"
    done = engineer.post(f"{base}/rollback/", {"reason": "not today"}, format="json").json()
    assert done["state"] == "rolled_back" and done["reason"] == "rolled back by engineer: not today"
    assert Deployment.objects.get(model=iris).routes == []
    assert engineer.post(f"{base}/promote/").status_code == 409


@pytest.mark.django_db
def test_approval_before_the_final_step_is_an_admins(iris: Any, client_for: Any) -> None:
    engineer, admin = client_for("engineer"), client_for("admin", "read", "manage", "admin")
    rollout = start(engineer, candidate=2, strategy="blue_green", require_approval=True).json()
    base = f"/api/v1/models/iris/rollouts/{rollout['id']}"
    record = Rollout.objects.get(pk=rollout["id"])
    deployment = Deployment.objects.get(model=iris)
    assert deployment.snapshot()["standby_version"] == 2 and deployment.routes == []
    rollouts._enter_step(Actor.system("tests"), record, deployment, 0)  # the workers are warm
    assert Rollout.objects.get(pk=record.pk).state == "awaiting_approval"
    assert engineer.post(f"{base}/approve/").json()["detail"] == "only an admin can approve a rollout's final step"
    assert engineer.post(f"{base}/promote/").json()["detail"] == (
        "this rollout needs an admin's approval before the candidate takes all traffic")
    approved = admin.post(f"{base}/approve/").json()
    assert approved["state"] == "running" and approved["approved_by"] == "admin"
    assert Deployment.objects.get(model=iris).routes == [{"version": 2, "weight": 100}]
    promoted = engineer.post(f"{base}/promote/").json()
    assert promoted["state"] == "promoted"
    assert iris.aliases.get(name="champion").version.number == 2
    assert Deployment.objects.get(model=iris).snapshot()["active_version"] == 2


@pytest.mark.django_db
def test_direct_promotes_at_once(iris: Any, client_for: Any) -> None:
    body = start(client_for("engineer"), candidate=2, strategy="direct").json()
    assert body["state"] == "promoted" and [e["kind"] for e in body["events"]] == ["start", "promote"]
    assert iris.aliases.get(name="champion").version.number == 2


@pytest.mark.django_db
def test_every_deployment_write_of_a_rollout_is_stamped_and_audited(iris: Any, client_for: Any,
                                                                      cast: dict[str, Any]) -> None:
    body = start(client_for("engineer"), candidate=2, strategy="canary").json()
    deployment = Deployment.objects.get(model=iris)
    assert deployment.updated_by == cast["engineer"]
    warming = AuditEvent.objects.filter(action="deployment.traffic").latest("id")
    assert warming.actor_username == "engineer"
    assert warming.after is not None and warming.after["standby_version"] == 2
    assert warming.before == {**warming.after, "standby_version": None}
    stamped = deployment.updated_at
    rollouts._enter_step(Actor.system("rollouts"), Rollout.objects.get(pk=body["id"]), deployment, 0)
    deployment.refresh_from_db()
    assert deployment.updated_by is None and deployment.updated_at > stamped  # the beat is no person
    step = AuditEvent.objects.filter(action="deployment.traffic").latest("id")
    assert step.actor_username == "rollouts" and step.before is not None and step.before["routes"] == []
    assert step.after == {**step.before, "standby_version": None,
                          "routes": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]}
    rollouts.control(actor=Actor(user=cast["admin"]), rollout=Rollout.objects.get(pk=body["id"]), action="promote")
    deployment.refresh_from_db()
    assert deployment.updated_by == cast["admin"] and deployment.snapshot()["active_version"] == 2
    promoted = AuditEvent.objects.filter(action="deployment.traffic").latest("id")
    assert promoted.before is not None and promoted.before["active_version"] == 1
    assert promoted.after == {**promoted.before, "active_version": 2, "routes": []}


@pytest.mark.django_db
def test_a_rollout_of_a_model_without_a_deployment_creates_one_audited(iris: Any, client_for: Any,
                                                                       cast: dict[str, Any]) -> None:
    Deployment.objects.filter(model=iris).delete()  # served by its champion, v1 (its first ready version)
    body = start(client_for("engineer"), candidate=2, strategy="direct").json()
    assert body["state"] == "promoted"
    actions = AuditEvent.objects.filter(action__startswith="deployment.").order_by("id").values_list("action",
                                                                                                    flat=True)
    assert list(actions) == ["deployment.create", "deployment.traffic"]
    deployment = Deployment.objects.get(model=iris)
    assert deployment.updated_by == cast["engineer"] and deployment.snapshot()["active_version"] == 2


@pytest.mark.django_db
def test_a_deployment_a_rollout_steers_is_not_deleted(iris: Any, client_for: Any, cast: dict[str, Any]) -> None:
    start(client_for("engineer"), candidate=2, strategy="shadow")
    deployment = Deployment.objects.get(model=iris)
    with pytest.raises(Conflict, match="a rollout of model 'iris' is live and owns its deployment: "
                                       "promote or roll it back first"):
        delete_deployment(actor=Actor(user=cast["admin"]), deployment=deployment)
    assert Deployment.objects.filter(pk=deployment.pk).exists()
    assert not AuditEvent.objects.filter(action="deployment.delete").exists()
