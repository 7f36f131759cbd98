import time
from typing import Any

import redis
from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from console.access import get_visible_model, request_token, require_engineer
from console.audit import Actor
from console.errors import InvalidInput, NotFound, ServiceUnavailable
from serving import live, rollouts, services
from serving.api.serializers import (
    DeploymentSerializer,
    DeploymentUpdateSerializer,
    RolloutActionSerializer,
    RolloutSerializer,
    RolloutStartSerializer,
    WorkerSerializer,
)
from serving.metrics import live_workers
from serving.models import Deployment, Rollout


class DeploymentView(APIView):
    """A model's deployment: which version answers and how requests are batched and queued.
    A model never configured shows the defaults (it serves its champion, else its newest ready
    version)."""

    def _deployment(self, request: Request, name: str) -> tuple[Deployment, bool]:
        model = get_visible_model(request.user, name, request_token(request))
        deployment = Deployment.objects.filter(model=model).select_related("model", "active_version").first()
        return (deployment, True) if deployment else (Deployment(model=model), False)

    @extend_schema(responses=DeploymentSerializer)
    def get(self, request: Request, name: str) -> Response:
        deployment, _ = self._deployment(request, name)
        return Response(DeploymentSerializer(deployment).data)

    @extend_schema(request=DeploymentUpdateSerializer, responses=DeploymentSerializer)
    def patch(self, request: Request, name: str) -> Response:
        deployment, _ = self._deployment(request, name)
        require_engineer(request.user, deployment.model)
        changes = DeploymentUpdateSerializer(data=request.data)
        changes.is_valid(raise_exception=True)
        updated = services.configure_deployment(actor=Actor.from_request(request), model=deployment.model,
                                                changes=changes.validated_data)
        return Response(DeploymentSerializer(updated).data)

    put = patch


class WorkerListView(APIView):
    """Live workers (heartbeat in the last 5 s): what each holds, its memory, its batches."""

    @extend_schema(responses=WorkerSerializer(many=True))
    def get(self, request: Request) -> Response:
        try:
            workers = live_workers(redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2))
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"Redis is unavailable: {exc}") from None
        now = time.time()
        body = [
            {"name": name, "host": beat.get("host"), "pid": beat.get("pid"), "memory_bytes": beat.get("rss"),
             "seconds_since_heartbeat": round(now - beat["ts"], 2),
             "versions": [{key: held[key] for key in ("model", "number", "provider", "batches", "rows")}
                          for held in beat.get("held", [])]}
            for name, beat in sorted(workers.items())
        ]
        return Response(body)


# -- rollouts ---------------------------------------------------------------------------------

def _rollouts() -> Any:
    return Rollout.objects.select_related("model", "stable_version", "candidate_version", "created_by",
                                          "approved_by").prefetch_related("events")


class RolloutListView(APIView):
    """A model's rollouts, newest first; POST starts one (engineers of the model's team)."""

    @extend_schema(responses=RolloutSerializer(many=True))
    def get(self, request: Request, name: str) -> Response:
        model = get_visible_model(request.user, name, request_token(request))
        return Response(RolloutSerializer(_rollouts().filter(model=model)[:50], many=True).data)

    @extend_schema(request=RolloutStartSerializer, responses={201: RolloutSerializer})
    def post(self, request: Request, name: str) -> Response:
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
    @extend_schema(responses=RolloutSerializer)
    def get(self, request: Request, name: str, rollout_id: int) -> Response:
        model = get_visible_model(request.user, name, request_token(request))
        rollout = _rollouts().filter(model=model, pk=rollout_id).first()
        if rollout is None:
            raise NotFound(f"model '{name}' has no rollout {rollout_id}")
        return Response(RolloutSerializer(rollout).data)


class RolloutActionView(APIView):
    """pause, resume, promote, rollback (engineers), approve (admins)."""

    @extend_schema(request=RolloutActionSerializer, responses=RolloutSerializer, operation_id="v1_rollouts_action")
    def post(self, request: Request, name: str, rollout_id: int, action: str) -> Response:
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
        if not raw.isdigit() or not 1 <= int(raw) <= 3600:
            raise InvalidInput("seconds must be a whole number from 1 to 3600")
        try:
            return Response(live.model_figures(model, int(raw)))
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"Redis is unavailable: {exc}") from None
