"""Writes to deployments, each in one audited transaction. Web processes pick changes up from
the database within a second (serving.v2.dataplane.ROUTE_TTL) and workers at their next plan."""

from typing import Any

from django.db import transaction
from django.utils import timezone

from console.audit import Actor, record_event
from console.errors import Conflict, InvalidInput, NotFound
from registry.models import ModelVersion, RegisteredModel
from serving.models import Deployment, Rollout, RolloutState
from serving.v2.wire import MAX_QUEUE_DELAY_MS
from webhooks import events as webhook_events

SETTINGS = ("max_batch_size", "max_queue_delay_ms", "preferred_batch_sizes", "max_queue_depth",
            "default_timeout_ms", "min_workers", "instances")
TRAFFIC = ("routes", "shadow_version", "shadow_percent", "sticky_by", "sticky_key")


def _servable(model: RegisteredModel, number: int) -> ModelVersion:
    version = model.versions.filter(number=number).first()
    if version is None:
        raise NotFound(f"model '{model.name}' has no version {number}")
    if not version.is_servable():
        raise InvalidInput(f"version {number} is {version.status}: only a ready version can serve")
    return version


def check_routes(model: RegisteredModel, routes: Any) -> list[dict[str, Any]]:
    """A weighted split as the deployment stores it, or InvalidInput saying what is wrong."""
    if not isinstance(routes, list) or any(
            not isinstance(arm, dict) or not isinstance(arm.get("version"), int)
            or not isinstance(arm.get("weight"), int | float) or arm["weight"] < 0 for arm in routes):
        raise InvalidInput('routes must be a list of {"version": number, "weight": percent}')
    numbers = [arm["version"] for arm in routes]
    if len(set(numbers)) != len(numbers):
        raise InvalidInput("each version may appear once in routes")
    for number in numbers:
        _servable(model, number)
    if routes and abs(sum(arm["weight"] for arm in routes) - 100) > 1e-6:
        raise InvalidInput(f"route weights must sum to 100, not {sum(arm['weight'] for arm in routes):g}")
    return [{"version": arm["version"], "weight": arm["weight"]} for arm in routes]


def _apply_traffic(model: RegisteredModel, deployment: Deployment, changes: dict[str, Any]) -> None:
    """Hand-set traffic: a weighted split, a shadow, an A/B key. A running rollout owns these."""
    if any(field in changes for field in TRAFFIC) and model.rollouts.filter(state__in=RolloutState.live()).exists():
        raise Conflict(f"a rollout of model '{model.name}' is live and owns its traffic: "
                       "promote or roll it back first")
    if "routes" in changes:
        deployment.routes = check_routes(model, changes["routes"])
    if "shadow_version" in changes:
        number = changes["shadow_version"]
        deployment.shadow_version = None if number is None else _servable(model, number)
    if "shadow_percent" in changes:
        deployment.shadow_percent = changes["shadow_percent"]
    for field in ("sticky_by", "sticky_key"):
        if field in changes:
            setattr(deployment, field, changes[field])
    if bool(deployment.sticky_by) != bool(deployment.sticky_key):
        raise InvalidInput("sticky_by and sticky_key go together")


def configure_deployment(*, actor: Actor, model: RegisteredModel, changes: dict[str, Any]) -> Deployment:
    with transaction.atomic():
        deployment, created = Deployment.objects.select_for_update().get_or_create(model=model)
        before = None if created else deployment.snapshot()
        if "active_version" in changes:
            number = changes["active_version"]
            deployment.active_version = None if number is None else _servable(model, number)
        _apply_traffic(model, deployment, changes)
        for field in SETTINGS:
            if field in changes:
                setattr(deployment, field, changes[field])
        if deployment.max_queue_delay_ms and not deployment.max_batch_size:
            raise InvalidInput("max_queue_delay_ms needs batching: set max_batch_size above 0")
        if deployment.max_queue_delay_ms > MAX_QUEUE_DELAY_MS:
            raise InvalidInput(f"max_queue_delay_ms is at most {MAX_QUEUE_DELAY_MS}: a longer wait holds every "
                               "caller of the model that long")
        _stamp(deployment, actor)
        deployment.save()
        record_event(actor=actor, action="deployment.configure", obj=deployment, before=before,
                     after=deployment.snapshot())
        webhook_events.deployment_changed(deployment, before, "configure")
    return deployment


def _stamp(deployment: Deployment, actor: Actor) -> None:
    deployment.updated_at = timezone.now()
    deployment.updated_by = actor.person


def lock_deployment(*, actor: Actor, model: RegisteredModel) -> Deployment:
    """The model's deployment, locked until the caller's transaction ends; created with the
    defaults (and audited) when the model has none."""
    deployment, created = Deployment.objects.select_for_update().get_or_create(
        model=model, defaults={"updated_by": actor.person})
    if created:
        record_event(actor=actor, action="deployment.create", obj=deployment, after=deployment.snapshot())
    return deployment


def set_traffic(*, actor: Actor, deployment: Deployment, routes: list[dict[str, Any]] | None = None,
                shadow: ModelVersion | None = None, shadow_percent: float = 0.0, standby: ModelVersion | None = None,
                sticky: tuple[str, str] = ("", ""), active: ModelVersion | None = None) -> None:
    """Traffic as a rollout steers it, replacing all of it (nothing given: all to the active
    version); `active` also makes that version the active one. The caller holds the lock
    (`lock_deployment`) and its transaction; stamped and audited with before and after."""
    before = deployment.snapshot()
    if active is not None:
        deployment.active_version = active
    deployment.routes = routes or []
    deployment.shadow_version, deployment.shadow_percent = shadow, shadow_percent if shadow else 0.0
    deployment.standby_version = standby
    deployment.sticky_by, deployment.sticky_key = sticky
    _stamp(deployment, actor)
    deployment.save()
    record_event(actor=actor, action="deployment.traffic", obj=deployment, before=before, after=deployment.snapshot())
    webhook_events.deployment_changed(deployment, before, "traffic")


def deployment_is_steered(deployment: Deployment) -> bool:
    """Whether a live rollout owns the deployment's traffic (it must end before the deployment goes)."""
    return Rollout.objects.filter(model_id=deployment.model_id, state__in=RolloutState.live()).exists()


def delete_deployment(*, actor: Actor, deployment: Deployment) -> None:
    """Remove a model's serving settings: it is then served by its champion (else by nothing)."""
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().select_related("model").get(pk=deployment.pk)
        if deployment_is_steered(deployment):
            raise Conflict(f"a rollout of model '{deployment.model.name}' is live and owns its deployment: "
                           "promote or roll it back first")
        record_event(actor=actor, action="deployment.delete", obj=deployment, before=deployment.snapshot())
        webhook_events.deployment_changed(deployment, deployment.snapshot(), "delete")
        deployment.delete()
