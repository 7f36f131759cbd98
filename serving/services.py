"""Writes to deployments, each in one audited transaction. Web processes pick changes up from
the database within a second (serving.dataplane.ROUTE_TTL) and workers at their next plan."""

from typing import Any

from django.db import transaction
from django.utils import timezone

from console.audit import Actor, record_event
from console.errors import InvalidInput, NotFound
from registry.models import RegisteredModel
from serving.models import Deployment

SETTINGS = ("max_batch_size", "max_queue_delay_ms", "preferred_batch_sizes", "max_queue_depth",
            "default_timeout_ms", "min_workers")


def configure_deployment(*, actor: Actor, model: RegisteredModel, changes: dict[str, Any]) -> Deployment:
    with transaction.atomic():
        deployment, created = Deployment.objects.select_for_update().get_or_create(model=model)
        before = None if created else deployment.snapshot()
        if "active_version" in changes:
            number = changes["active_version"]
            if number is None:
                deployment.active_version = None
            else:
                version = model.versions.filter(number=number).first()
                if version is None:
                    raise NotFound(f"model '{model.name}' has no version {number}")
                if not version.is_servable():
                    raise InvalidInput(f"version {number} is {version.status}: only a ready version can serve")
                deployment.active_version = version
        for field in SETTINGS:
            if field in changes:
                setattr(deployment, field, changes[field])
        if deployment.max_queue_delay_ms and not deployment.max_batch_size:
            raise InvalidInput("max_queue_delay_ms needs batching: set max_batch_size above 0")
        deployment.updated_at = timezone.now()
        deployment.updated_by = actor.user if actor.user is not None and actor.user.is_authenticated else None
        deployment.save()
        record_event(actor=actor, action="deployment.configure", obj=deployment, before=before,
                     after=deployment.snapshot())
    return deployment
