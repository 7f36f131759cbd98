"""The serving side's management API: deployments, workers, rollouts and metrics. Thin: parse,
check access, call a service, serialize."""

import re
import time
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from console.access import get_visible_model, request_token, require_engineer, visible_models
from console.api import parse_instant
from console.audit import Actor
from console.errors import InvalidInput, NotFound, ServiceUnavailable
from serving import live, rollouts, rollups, services
from serving.api.serializers import (
    DeploymentSerializer,
    DeploymentUpdateSerializer,
    RolloutActionSerializer,
    RolloutSerializer,
    RolloutStartSerializer,
    WorkerSerializer,
)
from serving.metrics import live_workers, workers_seen_by
from serving.models import Deployment, Rollout


class DeploymentView(APIView):
    """A model's deployment: which version answers and how requests are batched and queued.
    A model never configured shows the defaults (it serves its champion alias)."""

    def _deployment(self, request: Request, name: str) -> tuple[Deployment, bool]:
        model = get_visible_model(request.user, name, request_token(request))
        deployment = Deployment.objects.filter(model=model).select_related("model", "active_version").first()
        return (deployment, True) if deployment else (Deployment(model=model), False)

    @extend_schema(responses=DeploymentSerializer)
    def get(self, request: Request, name: str) -> Response:
        """The model's serving settings and the version traffic goes to now. A model never
        configured shows the defaults (it serves its champion alias)."""
        deployment, _ = self._deployment(request, name)
        return Response(DeploymentSerializer(deployment).data)

    @extend_schema(request=DeploymentUpdateSerializer, responses=DeploymentSerializer)
    def patch(self, request: Request, name: str) -> Response:
        """Change the settings sent, leaving the others (engineers of the model's team)."""
        deployment, _ = self._deployment(request, name)
        require_engineer(request.user, deployment.model)
        changes = DeploymentUpdateSerializer(data=request.data)
        changes.is_valid(raise_exception=True)
        updated = services.configure_deployment(actor=Actor.from_request(request), model=deployment.model,
                                                changes=changes.validated_data)
        return Response(DeploymentSerializer(updated).data)

    put = patch


class WorkerListView(APIView):
    """Live workers (heartbeat in the last 5 s): what each holds of the models you can see, its
    memory, its batches (host, pid and GPUs for admins only); 503 while Redis is unavailable."""

    @extend_schema(responses=WorkerSerializer(many=True))
    def get(self, request: Request) -> Response:
        try:
            beats = live_workers(redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2))
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"Redis is unavailable: {exc}") from None
        token = request_token(request)
        admin = request.user.is_superuser and (token is None or token.has_scope("admin"))
        names = None if admin else set(visible_models(request.user, token).values_list("name", flat=True))
        workers = workers_seen_by(beats, model_names=names, details=admin)
        now = time.time()
        body = [
            {"name": name, "host": beat.get("host"), "pid": beat.get("pid"), "memory_bytes": beat.get("rss"),
             "cpu_percent": beat.get("cpu", 0.0), "gpus": beat.get("gpus", []),
             "seconds_since_heartbeat": round(now - beat["ts"], 2),
             "versions": [{**{key: held[key] for key in ("model", "number", "provider", "batches", "rows")},
                           "instances": held.get("instances", 1)}  # workers from before 2026-12-03: 1
                          for held in beat.get("held", [])]}
            for name, beat in sorted(workers.items())
        ]
        return Response(body)


# -- rollouts ---------------------------------------------------------------------------------

def _rollouts() -> QuerySet[Rollout]:
    return Rollout.objects.select_related("model", "stable_version", "candidate_version", "created_by",
                                          "approved_by").prefetch_related("events")


class RolloutListView(APIView):
    """A model's rollouts, newest first; POST starts one (engineers of the model's team)."""

    @extend_schema(responses=RolloutSerializer(many=True))
    def get(self, request: Request, name: str) -> Response:
        """The model's latest 50 rollouts, newest first, each with its timeline."""
        model = get_visible_model(request.user, name, request_token(request))
        return Response(RolloutSerializer(_rollouts().filter(model=model)[:50], many=True).data)

    @extend_schema(request=RolloutStartSerializer, responses={201: RolloutSerializer})
    def post(self, request: Request, name: str) -> Response:
        """Start rolling out a ready candidate version (engineers of the model's team); 409 while
        the model has a live rollout."""
        model = get_visible_model(request.user, name, request_token(request))
        require_engineer(request.user, model)
        data = RolloutStartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        options = dict(data.validated_data)
        rollout = rollouts.start_rollout(actor=Actor.from_request(request), model=model,
                                         candidate=options.pop("candidate"), strategy=options.pop("strategy"),
                                         **options)
        return Response(RolloutSerializer(_rollouts().get(pk=rollout.pk)).data, status=201)


class RolloutDetailView(APIView):
    """One rollout of a model, by id."""

    @extend_schema(responses=RolloutSerializer)
    def get(self, request: Request, name: str, rollout_id: int) -> Response:
        """The rollout: its steps, gates, latest gate figures and timeline."""
        model = get_visible_model(request.user, name, request_token(request))
        rollout = _rollouts().filter(model=model, pk=rollout_id).first()
        if rollout is None:
            raise NotFound(f"model '{name}' has no rollout {rollout_id}")
        return Response(RolloutSerializer(rollout).data)


class RolloutActionView(APIView):
    """pause, resume, promote, rollback (engineers), approve (admins)."""

    @extend_schema(request=RolloutActionSerializer, responses=RolloutSerializer, operation_id="v1_rollouts_action")
    def post(self, request: Request, name: str, rollout_id: int, action: str) -> Response:
        """Apply `action` to the rollout: pause, resume, promote or rollback (engineers of the model's
        team), approve (admins); 409 when its state does not allow the action."""
        model = get_visible_model(request.user, name, request_token(request))
        require_engineer(request.user, model)
        rollout = Rollout.objects.filter(model=model, pk=rollout_id).first()
        if rollout is None:
            raise NotFound(f"model '{name}' has no rollout {rollout_id}")
        data = RolloutActionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rollouts.control(actor=Actor.from_request(request), rollout=rollout, action=action,
                         reason=data.validated_data["reason"])
        return Response(RolloutSerializer(_rollouts().get(pk=rollout.pk)).data)


class LiveMetricsView(APIView):
    """Live figures per version over the last `seconds` (1–3600, default 60), from every web
    process: requests/s, errors by code, latency percentiles by phase, batch sizes, shadow
    agreement, and the queue depth now."""

    @extend_schema(parameters=[OpenApiParameter("seconds", int, description="The window, 1–3600 (default 60)")],
                   responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, name: str) -> Response:
        model = get_visible_model(request.user, name, request_token(request))
        raw = request.query_params.get("seconds", "60")
        # ASCII digits: str.isdigit() also takes '²', which int() refuses (it was a 500).
        if not re.fullmatch(r"[0-9]{1,4}", raw) or not 1 <= int(raw) <= 3600:
            raise InvalidInput("seconds must be a whole number from 1 to 3600")
        try:
            return Response(live.model_figures(model, int(raw)))
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"Redis is unavailable: {exc}") from None


class MetricHistoryView(APIView):
    """A model's figures over any window, from the rollups in Postgres: per version the window's
    summary and one point per period. `start`/`end` ISO 8601 (default: the last hour),
    `resolution` 10 or 60 seconds (default: 10 up to 6 hours, else 60)."""

    @extend_schema(parameters=[OpenApiParameter("start", str), OpenApiParameter("end", str),
                               OpenApiParameter("resolution", int)], responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, name: str) -> Response:
        model = get_visible_model(request.user, name, request_token(request))
        params = request.query_params
        end = _when(params.get("end"), "end") or timezone.now()
        try:
            start = _when(params.get("start"), "start") or end - timedelta(hours=1)
        except OverflowError:  # the default window of an hour would begin before year 1 (it was a 500)
            raise InvalidInput("end is too early for the default window of an hour: send start too") from None
        if start >= end:
            raise InvalidInput("start must be before end")
        raw = params.get("resolution")
        if raw is None:
            resolution = 10 if end - start <= timedelta(hours=6) else 60
        elif raw in ("10", "60"):
            resolution = int(raw)
        else:
            raise InvalidInput("resolution must be 10 or 60 (seconds)")
        if (end - start).total_seconds() / resolution > 20_000:
            raise InvalidInput("that window has more than 20000 periods at this resolution: use 60 or a shorter window")
        versions = dict(model.versions.values_list("pk", "number"))
        return Response({"model": model.name, "start": start.isoformat(), "end": end.isoformat(),
                         "resolution": resolution, "versions": rollups.history(versions, start, end, resolution)})


def _when(raw: str | None, name: str) -> datetime | None:
    try:
        return parse_instant(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an ISO 8601 date and time, e.g. 2026-11-23T10:00:00Z") from None
