"""Deliveries made by a real Celery worker process to a real HTTP receiver on 127.0.0.1 (the
suite's workers run with PADDOCK_WEBHOOK_ALLOW_PRIVATE=1: tests/conftest.py `child_env`): a
receiver that fails twice sees the third try land, signed, with the same idempotency key; a
version validated by the worker and an alias move arrive as events, in order."""

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from console.audit import Actor
from registry import services as registry
from tests import models as built
from tests.conftest import wait_until
from tests.webhooks.receiver import running
from webhooks import services, signing
from webhooks.models import Delivery

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def test_a_receiver_that_fails_twice_sees_the_third_try_land(make_webhook: Callable[..., Any]) -> None:
    with running([500, 500, 200]) as receiver:
        webhook, secret = make_webhook(receiver.url, ["alias.moved"])
        with transaction.atomic():
            [delivery] = services.emit(event="alias.moved", team_id=webhook.team_id,
                                       data={"model": "iris", "alias": "champion", "version": 2, "previous_version": 1})
        wait_until(lambda: Delivery.objects.get(pk=delivery.pk).state != "pending", timeout=60, interval=0.2)
        received = list(receiver.received)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
        "succeeded", 3, 200, "")
    assert [r.headers["Paddock-Attempt"] for r in received] == ["1", "2", "3"]
    assert {r.headers["Paddock-Delivery"] for r in received} == {str(delivery.key)}  # the idempotency key
    assert all(signing.verify(secret, r.headers["Paddock-Signature"], r.body) for r in received)
    assert len({r.body for r in received}) == 1 and json.loads(received[0].body)["id"] == str(delivery.key)
    # The backoff: 1 s after the first failure, 2 s after the second.
    assert received[1].at - received[0].at >= 0.9
    assert received[2].at - received[1].at >= 1.9


def test_a_version_becoming_ready_and_an_alias_move_arrive_in_order(
        make_webhook: Callable[..., Any], cast: dict[str, Any], teams: dict[str, Any]) -> None:
    with running([200]) as receiver:
        webhook, secret = make_webhook(receiver.url, ["version.ready", "alias.moved"])
        model = registry.create_model(actor=Actor(user=cast["engineer"]), name="iris", team=teams["ml"])
        version, _ = registry.register_version(actor=Actor(user=cast["engineer"]), model=model,
                                               upload=SimpleUploadedFile("m.onnx", built.mlp_onnx(seed=1)))
        wait_until(lambda: len(receiver.received) == 2, timeout=90, interval=0.2)  # validated by the worker
        registry.set_alias(actor=Actor(user=cast["engineer"]), model=model, name="challenger", version=version)
        wait_until(lambda: len(receiver.received) == 3, timeout=30, interval=0.2)
        received = list(receiver.received)
    assert receiver.events() == ["version.ready", "alias.moved", "alias.moved"]
    bodies = [json.loads(r.body) for r in received]
    assert bodies[0]["data"]["version"] == 1 and bodies[0]["data"]["provider"] == "CPUExecutionProvider"
    assert [b["data"]["alias"] for b in bodies[1:]] == ["champion", "challenger"]
    assert all(signing.verify(secret, r.headers["Paddock-Signature"], r.body) for r in received)
    assert set(Delivery.objects.values_list("state", flat=True)) == {"succeeded"}
