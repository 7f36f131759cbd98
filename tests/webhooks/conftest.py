"""Fixtures of the webhook tests: a team's webhook, made through the service."""

from collections.abc import Callable
from typing import Any

import pytest
from django.test import override_settings

from console.audit import Actor
from webhooks import services
from webhooks.choices import EVENTS
from webhooks.models import Webhook


@pytest.fixture
def make_webhook(cast: dict[str, Any], teams: dict[str, Any]) -> Callable[..., tuple[Webhook, str]]:
    """A webhook of team ml (private targets allowed while it is made) and its secret."""

    def make(url: str, events: list[str] | None = None, team: str = "ml") -> tuple[Webhook, str]:
        with override_settings(PADDOCK_WEBHOOK_ALLOW_PRIVATE=True):
            return services.create_webhook(actor=Actor(user=cast["engineer"]), team=teams[team], url=url,
                                           events=events or list(EVENTS))

    return make
