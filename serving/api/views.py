import time

import redis
from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from console.access import get_visible_model, request_token, require_engineer
from console.audit import Actor
from console.errors import ServiceUnavailable
from serving import services
from serving.api.serializers import DeploymentSerializer, DeploymentUpdateSerializer, WorkerSerializer
from serving.metrics import live_workers
from serving.models import Deployment


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
