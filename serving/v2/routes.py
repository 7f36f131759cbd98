"""What the data plane needs to know about a model, read from the database and cached briefly
in each process: its versions (signature, status) and which one its deployment sends traffic to.
While the database is unreachable, the last good routes serve (serving/v2/outage.py)."""

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings
from django.db.models import Prefetch

from console.errors import ServiceUnavailable
from registry.choices import CHAMPION, VersionStatus
from registry.models import Alias, ModelVersion, RegisteredModel
from serving.models import DEFAULTS, Deployment
from serving.v2.outage import DATABASE_DOWN, OutageLog, closing_on_outage, not_cached, too_old
from serving.v2.signature import is_batchable
from serving.v2.wire import stream_key

PLATFORMS = {"onnx": "onnxruntime_onnx", "torchscript": "pytorch_libtorch"}
ActiveFrom = Literal["deployment", "champion"]


@dataclass(frozen=True, slots=True)
class VersionRoute:
    """A version as the data plane routes to it: status, signature, stream, batchability."""

    version_id: int
    number: int
    status: str
    format: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    batchable: bool
    sha256: str
    stream: str  # its Redis request stream (serving.v2.wire.stream_key), computed once

    def is_servable(self) -> bool:
        """Validated and ready: the only status that takes traffic."""
        return self.status == VersionStatus.READY


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """A model as the data plane routes it: versions, active version, traffic and deployment settings."""

    model_id: int
    name: str
    team_id: int
    versions: dict[int, VersionRoute]
    active: int | None  # the version number traffic goes to; None when nothing is ready
    # Where `active` came from: the deployment's version or the champion alias; None with no `active`.
    active_from: ActiveFrom | None = field(default=None, kw_only=True)
    settings: dict[str, Any] = field(default_factory=dict)
    # A split across versions: (number, cumulative weight up to 100), in order; empty: all to `active`.
    arms: tuple[tuple[int, float], ...] = ()
    shadow: tuple[int, float] | None = None  # (version number, percent of requests mirrored)
    sticky: tuple[str, str] | None = None  # ("header" | "parameter", its name): pins a caller to an arm
    standby: int | None = None  # held warm, no traffic (blue/green)

    @property
    def ready_numbers(self) -> list[int]:
        """Numbers of the versions that can serve, newest first."""
        return sorted(n for n, v in self.versions.items() if v.is_servable())

    @property
    def weights(self) -> list[tuple[int, float]]:
        """(version number, percent of traffic) in order: the split, or all to `active`."""
        if not self.arms:
            return [(self.active, 100.0)] if self.active is not None else []
        previous, weights = 0.0, []
        for number, cumulative in self.arms:
            weights.append((number, round(cumulative - previous, 3)))
            previous = cumulative
        return weights

    @property
    def held_numbers(self) -> set[int]:
        """Every version the workers should hold for this model: traffic, shadow and standby."""
        numbers = {number for number, _ in self.arms}
        if self.active is not None:
            numbers.add(self.active)
        if self.shadow is not None:
            numbers.add(self.shadow[0])
        if self.standby is not None:
            numbers.add(self.standby)
        return numbers


def _settings(deployment: Deployment | None) -> dict[str, Any]:
    if deployment is None:
        return {**DEFAULTS, "preferred_batch_sizes": []}
    # The fields themselves, not snapshot(): it would also load the deployment's versions, a query each.
    return {**{key: getattr(deployment, key) for key in DEFAULTS},
            "preferred_batch_sizes": list(deployment.preferred_batch_sizes)}


def _number(versions: dict[int, VersionRoute], version_id: int | None) -> int | None:
    return next((v.number for v in versions.values() if v.version_id == version_id), None)


def _traffic(deployment: Deployment | None, versions: dict[int, VersionRoute]) -> dict[str, Any]:
    if deployment is None:
        return {}
    arms, total = [], 0.0
    for arm in deployment.routes:
        if arm["weight"] > 0 and arm["version"] in versions:
            total += arm["weight"]
            arms.append((arm["version"], total))
    shadow_number = _number(versions, deployment.shadow_version_id)
    return {
        "arms": tuple(arms),
        "shadow": (shadow_number, deployment.shadow_percent) if shadow_number and deployment.shadow_percent > 0
        else None,
        "sticky": (deployment.sticky_by, deployment.sticky_key) if deployment.sticky_by else None,
        "standby": _number(versions, deployment.standby_version_id),
    }


def _active(model: RegisteredModel, deployment: Deployment | None,
            versions: dict[int, VersionRoute]) -> tuple[int | None, ActiveFrom | None]:
    """The version traffic goes to and where it came from: the deployment's version; else the
    champion alias (a model's first ready version carries it from the start); else none: a new
    version never serves until a person promotes it."""
    if deployment is not None and deployment.active_version_id is not None:
        number = _number(versions, deployment.active_version_id)
        return number, "deployment" if number is not None else None
    champion = next((a for a in model.aliases.all() if a.name == CHAMPION), None)
    if champion is not None and champion.version.status == VersionStatus.READY:
        return champion.version.number, "champion"
    return None, None


def _route(model: RegisteredModel) -> ModelRoute:
    deployment = getattr(model, "deployment", None)
    versions = {
        v.number: VersionRoute(v.pk, v.number, v.status, v.format, v.inputs, v.outputs,
                               is_batchable(v.inputs, v.outputs), v.sha256, stream_key(v.pk, v.sha256))
        for v in model.versions.all()
    }
    active, active_from = _active(model, deployment, versions)
    return ModelRoute(model.pk, model.name, model.team_id, versions, active, _settings(deployment),
                      active_from=active_from, **_traffic(deployment, versions))


def _models() -> Any:
    return RegisteredModel.objects.select_related("deployment").prefetch_related(
        Prefetch("versions", queryset=ModelVersion.objects.only(
            "id", "number", "status", "format", "inputs", "outputs", "sha256", "model_id")),
        Prefetch("aliases", queryset=Alias.objects.select_related("version")),
    )


@closing_on_outage
def load_model_route(name: str) -> ModelRoute | None:
    """A model's route from the database, or None for an unknown model."""
    model = _models().filter(name=name).first()
    return _route(model) if model is not None else None


def load_routes(model_ids: Iterable[int]) -> dict[int, ModelRoute]:
    """Several models' routes by model id, in the same three queries however many models."""
    return {model.pk: _route(model) for model in _models().filter(pk__in=list(model_ids))}


@closing_on_outage
def _read_all_routes() -> list[ModelRoute]:
    return [_route(model) for model in _models()]


_last_good: tuple[float, list[ModelRoute]] | None = None  # (monotonic time loaded, routes) for load_all_routes
_outage = OutageLog("planning from the last good routes (for up to PADDOCK_DB_OUTAGE_GRACE_SECONDS)",
                    "routes are loaded from it again")


def load_all_routes() -> list[ModelRoute]:
    """Every model's route (the batcher plans from them once a second). While the database is
    unreachable, the last good list, for at most PADDOCK_DB_OUTAGE_GRACE_SECONDS after it was
    loaded (then ServiceUnavailable), so that the workers go on serving and heartbeating."""
    global _last_good
    grace = settings.PADDOCK_DB_OUTAGE_GRACE_SECONDS
    try:
        routes = _read_all_routes()
    except DATABASE_DOWN as error:
        _outage.failed(error)
        if _last_good is None:
            raise ServiceUnavailable(not_cached("routes")) from error
        if time.monotonic() - _last_good[0] > grace:
            raise ServiceUnavailable(too_old("routes", grace)) from error
        return _last_good[1]
    _outage.succeeded()
    _last_good = (time.monotonic(), routes)
    return routes
