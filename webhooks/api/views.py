"""The webhooks API, under /api/v1/teams/{team}/webhooks/: list and create (the secret in that
answer only), one webhook (pause or resume with PATCH, DELETE), its deliveries, redeliver. Thin:
parse, check access (webhooks/access.py), call webhooks.services, serialize."""

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from console.access import request_token
from console.audit import Actor
from console.errors import NotFound
from console.models import Team
from webhooks import services
from webhooks.access import get_visible_team, require_team_engineer
from webhooks.api.serializers import (
    DeliverySerializer,
    WebhookCreatedSerializer,
    WebhookCreateSerializer,
    WebhookSerializer,
    WebhookUpdateSerializer,
)
from webhooks.models import Delivery, Webhook


def _team(request: Request, name: str) -> Team:
    return get_visible_team(request.user, name, request_token(request))


def _webhook(team: Team, webhook_id: int) -> Webhook:
    webhook = Webhook.objects.select_related("team", "created_by").filter(team=team, pk=webhook_id).first()
    if webhook is None:
        raise NotFound(f"team '{team.name}' has no webhook {webhook_id}")
    return webhook


def _delivery(webhook: Webhook, delivery_id: int) -> Delivery:
    delivery = webhook.deliveries.filter(pk=delivery_id).first()
    if delivery is None:
        raise NotFound(f"webhook {webhook.pk} has no delivery {delivery_id}")
    return delivery


class WebhookListView(APIView):
    """A team's webhooks (its members); POST makes one (its engineers)."""

    parser_classes = [JSONParser]

    @extend_schema(responses=WebhookSerializer(many=True))
    def get(self, request: Request, team: str) -> Response:
        """Every webhook of the team, oldest first, without their secrets."""
        webhooks = Webhook.objects.select_related("team", "created_by").filter(team=_team(request, team))
        return Response(WebhookSerializer(webhooks, many=True).data)

    @extend_schema(request=WebhookCreateSerializer, responses={201: WebhookCreatedSerializer})
    def post(self, request: Request, team: str) -> Response:
        """Make a webhook: 400 naming a refused URL or event, 409 past 20 per team. The answer
        holds its secret, shown this once."""
        found = _team(request, team)
        require_team_engineer(request.user, found)
        data = WebhookCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        webhook, secret = services.create_webhook(actor=Actor.from_request(request), team=found,
                                                  **data.validated_data)
        body = WebhookSerializer(webhook).data
        body["secret"] = secret
        return Response(body, status=201)


class WebhookDetailView(APIView):
    """One webhook; PATCH pauses or resumes it, DELETE removes it with its deliveries (engineers)."""

    parser_classes = [JSONParser]

    @extend_schema(responses=WebhookSerializer)
    def get(self, request: Request, team: str, webhook_id: int) -> Response:
        """The webhook, without its secret."""
        return Response(WebhookSerializer(_webhook(_team(request, team), webhook_id)).data)

    @extend_schema(request=WebhookUpdateSerializer, responses=WebhookSerializer)
    def patch(self, request: Request, team: str, webhook_id: int) -> Response:
        """`{"active": false}` pauses it (new events are not delivered, pending deliveries fail),
        `{"active": true}` resumes it."""
        found = _team(request, team)
        require_team_engineer(request.user, found)
        webhook = _webhook(found, webhook_id)
        data = WebhookUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changed = services.set_webhook_active(actor=Actor.from_request(request), webhook=webhook,
                                              active=data.validated_data["active"])
        return Response(WebhookSerializer(changed).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, team: str, webhook_id: int) -> Response:
        """Remove the webhook and its log of deliveries."""
        found = _team(request, team)
        require_team_engineer(request.user, found)
        services.delete_webhook(actor=Actor.from_request(request), webhook=_webhook(found, webhook_id))
        return Response(status=204)


class DeliveryListView(generics.ListAPIView[Delivery]):
    """A webhook's deliveries, newest first: state, attempts, the last status code, error and time."""

    serializer_class = DeliverySerializer

    def get_queryset(self) -> QuerySet[Delivery]:
        """The deliveries of the webhook named in the path, if the caller sees its team."""
        if getattr(self, "swagger_fake_view", False):  # the schema's generation: no caller, no team
            return Delivery.objects.none()
        kwargs: dict[str, Any] = self.kwargs
        return _webhook(_team(self.request, kwargs["team"]), kwargs["webhook_id"]).deliveries.all()


class DeliveryRedeliverView(APIView):
    """Send a delivery again (engineers): a new delivery, same body and idempotency key."""

    @extend_schema(request=None, responses={202: DeliverySerializer})
    def post(self, request: Request, team: str, webhook_id: int, delivery_id: int) -> Response:
        """202 with the new delivery; 409 while the webhook is paused or the delivery is still being tried."""
        found = _team(request, team)
        require_team_engineer(request.user, found)
        delivery = _delivery(_webhook(found, webhook_id), delivery_id)
        again = services.redeliver(actor=Actor.from_request(request), delivery=delivery)
        return Response(DeliverySerializer(again).data, status=202)
