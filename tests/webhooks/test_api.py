"""The webhooks API: create (the secret once), list, pause and resume, delete, the log of
deliveries and redeliver, each audited; refusals with their status and message."""

from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings
from rest_framework.test import APIClient

from console.models import AuditEvent
from webhooks import services
from webhooks.models import Delivery, Webhook

pytestmark = pytest.mark.django_db
API = "/api/v1/teams/ml/webhooks/"
TARGET = "http://127.0.0.1:9/hooks/paddock"


def create(client: APIClient, **body: Any) -> Any:
    return client.post(API, {"url": TARGET, "events": ["version.ready", "alias.moved"], **body}, format="json")


@override_settings(PADDOCK_WEBHOOK_ALLOW_PRIVATE=True)
def test_an_engineer_creates_a_webhook_and_sees_its_secret_once(client_for: Callable[..., APIClient]) -> None:
    engineer = client_for("engineer")
    made = create(engineer, events=["alias.moved", "version.ready", "alias.moved"])
    assert made.status_code == 201, made.json()
    body = made.json()
    secret = body.pop("secret")
    assert secret.startswith("whsec_") and len(secret) > 40
    assert body == {"id": body["id"], "team": "ml", "url": TARGET, "events": ["version.ready", "alias.moved"],
                    "active": True, "created_by": "engineer", "created_at": body["created_at"]}
    assert Webhook.objects.get(pk=body["id"]).secret == secret
    listed = engineer.get(API).json()
    assert listed == [body]
    assert engineer.get(f"{API}{body['id']}/").json() == body
    event = AuditEvent.objects.get(action="webhook.created")
    assert event.after == {"team": "ml", "url": TARGET, "events": ["version.ready", "alias.moved"], "active": True}
    assert secret not in str(listed) + str(event.after) + str(event.before)


@pytest.mark.parametrize(("body", "message"), [
    ({"url": "http://127.0.0.1:9/hook"},
     "webhook target 127.0.0.1 is a loopback address; set PADDOCK_WEBHOOK_ALLOW_PRIVATE=1 to allow it"),
    ({"url": "ftp://93.184.216.34/"}, "'url' must start with http:// or https://"),
    ({"url": "http://paddock-hooks.invalid/"}, "webhook target paddock-hooks.invalid does not resolve: "),
])
def test_a_refused_url_is_a_400_naming_why(client_for: Callable[..., APIClient], body: dict[str, str],
                                           message: str) -> None:
    refused = create(client_for("engineer"), **body)
    assert refused.status_code == 400
    assert refused.json()["detail"].startswith(message)
    assert not Webhook.objects.exists() and not AuditEvent.objects.filter(action__startswith="webhook.").exists()


def test_unknown_or_no_events_are_refused(client_for: Callable[..., APIClient]) -> None:
    engineer = client_for("engineer")
    unknown = create(engineer, events=["model.deleted"])
    assert unknown.status_code == 400
    assert unknown.json() == {"events": {"0": ['"model.deleted" is not a valid choice.']}}
    none = create(engineer, events=[])
    assert none.status_code == 400 and none.json() == {"events": ["This list may not be empty."]}


@override_settings(PADDOCK_WEBHOOK_ALLOW_PRIVATE=True)
def test_a_team_has_at_most_20_webhooks(client_for: Callable[..., APIClient]) -> None:
    engineer = client_for("engineer")
    for _ in range(services.MAX_WEBHOOKS_PER_TEAM):
        assert create(engineer).status_code == 201
    refused = create(engineer)
    assert refused.status_code == 409
    assert refused.json() == {"detail": "team 'ml' has 20 webhooks, the most it may have: delete one first"}


@override_settings(PADDOCK_WEBHOOK_ALLOW_PRIVATE=True)
def test_pause_resume_and_delete_are_audited(client_for: Callable[..., APIClient]) -> None:
    engineer = client_for("engineer")
    webhook = create(engineer).json()
    path = f"{API}{webhook['id']}/"
    assert engineer.patch(path, {"active": False}, format="json").json()["active"] is False
    assert engineer.patch(path, {"active": False}, format="json").json()["active"] is False  # no change, no event
    assert engineer.patch(path, {"active": True}, format="json").json()["active"] is True
    assert engineer.delete(path).status_code == 204
    assert engineer.get(path).json() == {"detail": f"team 'ml' has no webhook {webhook['id']}"}
    actions = AuditEvent.objects.filter(action__startswith="webhook.").order_by("id").values_list("action", flat=True)
    assert list(actions) == ["webhook.created", "webhook.paused", "webhook.resumed", "webhook.deleted"]


@override_settings(PADDOCK_WEBHOOK_ALLOW_PRIVATE=True)
def test_the_log_lists_deliveries_and_redeliver_sends_one_again_with_the_same_key(
        client_for: Callable[..., APIClient]) -> None:
    engineer = client_for("engineer")
    webhook = create(engineer).json()
    with transaction.atomic():
        [delivery] = services.emit(event="alias.moved", team_id=Webhook.objects.get().team_id, data={"model": "iris"})
    log = f"{API}{webhook['id']}/deliveries/"
    [listed] = engineer.get(log).json()["results"]
    assert listed["state"] == "pending" and listed["attempts"] == 0 and listed["key"] == str(delivery.key)
    redeliver = f"{log}{delivery.pk}/redeliver/"
    busy = engineer.post(redeliver)
    assert busy.status_code == 409
    assert busy.json() == {"detail": f"delivery {delivery.pk} is still being tried: redeliver it once it has "
                                     "succeeded or failed"}
    Delivery.objects.filter(pk=delivery.pk).update(state="failed", attempts=5, last_status_code=500)
    again = engineer.post(redeliver)
    assert again.status_code == 202, again.json()
    assert again.json()["key"] == str(delivery.key) and again.json()["redelivery_of"] == delivery.pk
    assert again.json()["state"] == "pending" and again.json()["payload"] == delivery.payload
    assert again.json()["attempts"] == 0  # due at once: the workers' senders pick it up
    assert [d["id"] for d in engineer.get(log).json()["results"]] == [again.json()["id"], delivery.pk]
    event = AuditEvent.objects.get(action="webhook.redelivered")
    assert event.after == {"delivery": again.json()["id"], "redelivery_of": delivery.pk, "event": "alias.moved",
                           "key": str(delivery.key)}
    missing = engineer.post(f"{log}999999/redeliver/")
    assert missing.status_code == 404
    assert missing.json() == {"detail": f"webhook {webhook['id']} has no delivery 999999"}
