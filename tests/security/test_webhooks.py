"""Hostile use of webhooks: another team's webhooks answer 404 whatever the verb, a viewer or a
narrow token cannot change them, the workers cannot be aimed at Paddock's own network (loopback,
private, link-local, however the address is written), and a secret is never shown twice."""

from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction
from django.test import Client, override_settings
from rest_framework.test import APIClient

from console.audit import Actor
from console.models import AuditEvent
from tests.conftest import PASSWORD
from webhooks import services
from webhooks.models import Delivery, Webhook

pytestmark = pytest.mark.django_db
HINT = "; set PADDOCK_WEBHOOK_ALLOW_PRIVATE=1 to allow it"


@pytest.fixture
def theirs(cast: dict[str, Any], teams: dict[str, Any]) -> tuple[Webhook, Delivery]:
    """A webhook of team `other` with one delivery, failed."""
    webhook, _ = services.create_webhook(actor=Actor(user=cast["outsider"]), team=teams["other"],
                                         url="https://93.184.216.34/hook", events=["alias.moved"])
    with transaction.atomic():
        [delivery] = services.emit(event="alias.moved", team_id=teams["other"].pk, data={"model": "theirs"})
    Delivery.objects.filter(pk=delivery.pk).update(state="failed")
    return webhook, delivery


def test_another_teams_webhooks_answer_404_whatever_the_verb(
        theirs: tuple[Webhook, Delivery], client_for: Callable[..., APIClient]) -> None:
    webhook, delivery = theirs
    engineer = client_for("engineer")
    base = f"/api/v1/teams/other/webhooks/{webhook.pk}"
    answers = [
        engineer.get("/api/v1/teams/other/webhooks/"),
        engineer.post("/api/v1/teams/other/webhooks/", {"url": "https://93.184.216.34/", "events": ["alias.moved"]},
                      format="json"),
        engineer.get(f"{base}/"),
        engineer.patch(f"{base}/", {"active": False}, format="json"),
        engineer.delete(f"{base}/"),
        engineer.get(f"{base}/deliveries/"),
        engineer.post(f"{base}/deliveries/{delivery.pk}/redeliver/"),
    ]
    assert [(a.status_code, a.json()) for a in answers] == [(404, {"detail": "team 'other' not found"})] * 7
    # Nor through the engineer's own team's paths.
    mine = engineer.get(f"/api/v1/teams/ml/webhooks/{webhook.pk}/")
    assert mine.status_code == 404 and mine.json() == {"detail": f"team 'ml' has no webhook {webhook.pk}"}
    redeliver = engineer.post(f"/api/v1/teams/ml/webhooks/{webhook.pk}/deliveries/{delivery.pk}/redeliver/")
    assert redeliver.status_code == 404
    assert Webhook.objects.get(pk=webhook.pk).active and Delivery.objects.count() == 1
    assert not AuditEvent.objects.filter(action__in=["webhook.paused", "webhook.deleted", "webhook.redelivered"])


def test_a_viewer_cannot_create_pause_delete_or_redeliver(
        client_for: Callable[..., APIClient], cast: dict[str, Any], teams: dict[str, Any]) -> None:
    webhook, _ = services.create_webhook(actor=Actor(user=cast["engineer"]), team=teams["ml"],
                                         url="https://93.184.216.34/hook", events=["alias.moved"])
    with transaction.atomic():
        [delivery] = services.emit(event="alias.moved", team_id=teams["ml"].pk, data={"model": "iris"})
    Delivery.objects.filter(pk=delivery.pk).update(state="failed")
    viewer = client_for("viewer")
    base = f"/api/v1/teams/ml/webhooks/{webhook.pk}"
    assert viewer.get("/api/v1/teams/ml/webhooks/").status_code == 200  # members see them
    answers = [
        viewer.post("/api/v1/teams/ml/webhooks/", {"url": "https://93.184.216.34/", "events": ["alias.moved"]},
                    format="json"),
        viewer.patch(f"{base}/", {"active": False}, format="json"),
        viewer.delete(f"{base}/"),
        viewer.post(f"{base}/deliveries/{delivery.pk}/redeliver/"),
    ]
    refusal = {"detail": "the engineer role in team 'ml' is required to change its webhooks"}
    assert [(a.status_code, a.json()) for a in answers] == [(403, refusal)] * 4
    assert Webhook.objects.count() == 1 and Delivery.objects.count() == 1


def test_a_read_or_model_limited_token_cannot_change_webhooks(client_for: Callable[..., APIClient]) -> None:
    body = {"url": "https://93.184.216.34/", "events": ["alias.moved"]}
    read = client_for("engineer", "read").post("/api/v1/teams/ml/webhooks/", body, format="json")
    assert read.status_code == 403 and read.json() == {"detail": "token lacks the 'manage' scope"}
    narrow = client_for("engineer", "read", "manage", model_names=["iris"])
    for answer in (narrow.get("/api/v1/teams/ml/webhooks/"), narrow.post("/api/v1/teams/ml/webhooks/", body,
                                                                           format="json")):
        assert answer.status_code == 403
        assert answer.json() == {"detail": "a token limited to models cannot reach a team's webhooks: they carry "
                                           "events of every model of the team"}
    assert not Webhook.objects.exists()


@pytest.mark.parametrize(("url", "message"), [
    ("http://127.0.0.1:6379/", "webhook target 127.0.0.1 is a loopback address" + HINT),
    ("http://localhost:5432/", "webhook target localhost resolves to 127.0.0.1, a loopback address" + HINT),
    ("http://2130706433/", "webhook target 2130706433 resolves to 127.0.0.1, a loopback address" + HINT),
    ("http://[::ffff:127.0.0.1]/", "webhook target ::ffff:127.0.0.1 is a loopback address" + HINT),
    ("http://[::1]:8000/", "webhook target ::1 is a loopback address" + HINT),
    ("http://169.254.169.254/latest/meta-data/", "webhook target 169.254.169.254 is a link-local address" + HINT),
    ("http://10.0.0.1/", "webhook target 10.0.0.1 is a private address" + HINT),
    ("http://0.0.0.0:8000/", "webhook target 0.0.0.0 is an unspecified address, which is never allowed"),
    ("gopher://127.0.0.1:6379/_FLUSHALL", "'url' must start with http:// or https://"),
])
def test_the_workers_cannot_be_aimed_at_paddocks_own_network(
        client_for: Callable[..., APIClient], url: str, message: str) -> None:
    refused = client_for("engineer").post("/api/v1/teams/ml/webhooks/", {"url": url, "events": ["alias.moved"]},
                                          format="json")
    assert refused.status_code == 400
    assert refused.json() == {"detail": message}
    assert not Webhook.objects.exists()


@override_settings(PADDOCK_WEBHOOK_ALLOW_PRIVATE=True)
def test_a_secret_is_shown_once_and_never_again(client_for: Callable[..., APIClient], cast: dict[str, Any]) -> None:
    engineer = client_for("engineer")
    made = engineer.post("/api/v1/teams/ml/webhooks/", {"url": "http://127.0.0.1:9/", "events": ["alias.moved"]},
                         format="json").json()
    secret = made["secret"]
    console = Client()
    assert console.login(username="admin", password=PASSWORD)
    seen = [engineer.get("/api/v1/teams/ml/webhooks/").content,
            engineer.get(f"/api/v1/teams/ml/webhooks/{made['id']}/").content,
            console.get("/webhooks/ml/").content,
            console.get(f"/admin/webhooks/webhook/{made['id']}/change/").content,
            str(list(AuditEvent.objects.values("before", "after"))).encode()]
    assert console.get(f"/admin/webhooks/webhook/{made['id']}/change/").status_code == 200
    assert all(secret.encode() not in page for page in seen)
