"""Which changes emit which events, with what data and in what order: each verb of the registry
and of serving emits inside its own transaction (the deliveries' rows are read here; sending
them is tests/webhooks/test_delivery.py's and test_worker.py's)."""

from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from console.audit import Actor
from registry import services as registry
from serving import rollouts
from serving.models import Deployment, Rollout
from serving.services import configure_deployment
from tests import models as built
from tests.conftest import ready_version
from webhooks.models import Delivery

pytestmark = pytest.mark.django_db


def sent() -> list[tuple[str, dict[str, Any]]]:
    """Each delivery's event and data, in the order they were emitted."""
    return [(d.event, d.payload["data"]) for d in Delivery.objects.order_by("id")]


def test_a_version_becoming_ready_then_an_alias_move_emit_in_that_order(
        make_webhook: Callable[..., Any], cast: dict[str, Any], teams: dict[str, Any]) -> None:
    make_webhook("http://127.0.0.1:9/hook")
    model = registry.create_model(actor=Actor(user=cast["engineer"]), name="iris", team=teams["ml"])
    first = ready_version(model, 1)
    second = ready_version(model, 2)
    registry.set_alias(actor=Actor(user=cast["engineer"]), model=model, name="champion", version=second)
    registry.set_alias(actor=Actor(user=cast["engineer"]), model=model, name="champion", version=second)  # no move
    events = sent()
    assert [event for event, _ in events] == ["version.ready", "alias.moved", "version.ready", "alias.moved"]
    assert events[0][1] == {"model": "iris", "version": 1, "status": "ready", "reason": "", "format": "onnx",
                            "sha256": first.sha256, "provider": "tests"}
    assert events[1][1] == {"model": "iris", "alias": "champion", "version": 1, "previous_version": None}
    assert events[3][1] == {"model": "iris", "alias": "champion", "version": 2, "previous_version": 1}
    assert {d.payload["team"] for d in Delivery.objects.all()} == {"ml"}


def test_a_failed_validation_emits_version_failed_with_the_reason(
        make_webhook: Callable[..., Any], cast: dict[str, Any], teams: dict[str, Any]) -> None:
    make_webhook("http://127.0.0.1:9/hook", ["version.failed"])
    model = registry.create_model(actor=Actor(user=cast["engineer"]), name="iris", team=teams["ml"])
    version, _ = registry.register_version(actor=Actor.system("tests"), model=model,
                                           upload=SimpleUploadedFile("m.onnx", built.mlp_onnx(seed=1)))
    assert registry.claim_validation(actor=Actor.system("tests"), version_id=version.pk)
    registry.finish_validation(actor=Actor.system("tests"), version_id=version.pk, report=None,
                               error="onnxruntime could not load it")
    [(event, data)] = sent()
    assert event == "version.failed"
    assert data["status"] == "failed" and data["reason"] == "onnxruntime could not load it"


def test_a_deployment_change_emits_its_before_and_after(make_webhook: Callable[..., Any], iris: Any,
                                                        cast: dict[str, Any]) -> None:
    make_webhook("http://127.0.0.1:9/hook", ["deployment.changed"])
    configure_deployment(actor=Actor(user=cast["engineer"]), model=iris, changes={"max_batch_size": 16})
    configure_deployment(actor=Actor(user=cast["engineer"]), model=iris, changes={"max_batch_size": 16})  # no change
    [(event, data)] = sent()
    assert event == "deployment.changed" and data["model"] == "iris" and data["action"] == "configure"
    assert data["before"]["max_batch_size"] == 64 and data["after"]["max_batch_size"] == 16


def test_a_rollout_emits_its_steps_approval_and_promotion_with_the_gate_figures(
        make_webhook: Callable[..., Any], iris: Any, cast: dict[str, Any]) -> None:
    make_webhook("http://127.0.0.1:9/hook", ["rollout.step", "rollout.awaiting_approval", "rollout.promoted",
                                             "rollout.rolled_back"])
    rollout = rollouts.start_rollout(actor=Actor(user=cast["engineer"]), model=iris, candidate=2,
                                     strategy="blue_green", require_approval=True)
    gates = {"passed": True, "failures": [], "checks": {"error_rate": {"candidate": 0.0, "limit": 0.01}}}
    Rollout.objects.filter(pk=rollout.pk).update(last_check=gates)
    rollouts._enter_step(Actor.system("tests"), Rollout.objects.get(pk=rollout.pk),
                         Deployment.objects.get(model=iris), 0)  # warm: the final step needs an admin
    rollouts.control(actor=Actor(user=cast["admin"]), rollout=Rollout.objects.get(pk=rollout.pk), action="approve")
    rollouts.control(actor=Actor(user=cast["admin"]), rollout=Rollout.objects.get(pk=rollout.pk), action="promote")
    events = sent()
    assert [event for event, _ in events] == ["rollout.step", "rollout.awaiting_approval", "rollout.step",
                                              "rollout.promoted"]
    waiting, promoted = events[1][1], events[3][1]
    assert waiting["figures"] == gates and waiting["last_check"] == gates and waiting["state"] == "awaiting_approval"
    assert promoted["state"] == "promoted" and promoted["candidate"] == 2 and promoted["stable"] == 1
    assert promoted["strategy"] == "blue_green" and promoted["rollout"] == rollout.pk
    assert events[2][1]["figures"]["routes"] == [{"version": 2, "weight": 100}]


def test_a_rollback_emits_rolled_back(make_webhook: Callable[..., Any], iris: Any, cast: dict[str, Any]) -> None:
    make_webhook("http://127.0.0.1:9/hook", ["rollout.rolled_back"])
    rollout = rollouts.start_rollout(actor=Actor(user=cast["engineer"]), model=iris, candidate=2, strategy="canary")
    rollouts.control(actor=Actor(user=cast["engineer"]), rollout=rollout, action="rollback", reason="not today")
    [(event, data)] = sent()
    assert event == "rollout.rolled_back" and data["state"] == "rolled_back"
    assert data["message"] == "rolled back by engineer: not today"
