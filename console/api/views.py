"""The console's part of the management API: who the caller is, API tokens and the audit log."""

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from console import services
from console.access import request_token
from console.api import text_param
from console.api.serializers import (
    AuditEventSerializer,
    TokenCreatedSerializer,
    TokenCreateSerializer,
    TokenSerializer,
    WhoamiSerializer,
)
from console.audit import Actor
from console.audit_filters import filter_events
from console.errors import NotFound
from console.models import ApiToken, AuditEvent, Membership


class WhoamiView(APIView):
    """Who the caller is (`GET /api/v1/whoami/`): a token's holder or the signed-in person. Any
    valid token may ask, a predict-only one too: a script checks what its token is before it uses it."""

    scopes = {"GET": ""}

    @extend_schema(responses=WhoamiSerializer)
    def get(self, request: Request) -> Response:
        """The username, whether staff, each team with the caller's role in it (by name), and the
        token the call came with (its name, scopes and expiry; null in a browser session)."""
        user = request.user
        assert user.is_authenticated  # HasScope refuses anonymous callers; this tells mypy
        teams = Membership.objects.filter(user=user).select_related("team").order_by("team__name")
        return Response(WhoamiSerializer({"username": user.get_username(), "is_staff": user.is_staff,
                                          "teams": teams, "token": request_token(request)}).data)


@extend_schema_view(get=extend_schema(parameters=[
    OpenApiParameter("user", str, description="Admins: only this user's tokens"),
]))
class TokenListView(generics.ListAPIView):
    """Your tokens (admins, in a session or with an `admin` token: everyone's, `?user=` to filter)."""

    serializer_class = TokenSerializer
    scopes = {"POST": "read"}  # any token may mint a token no stronger than itself

    def get_queryset(self) -> QuerySet[ApiToken]:
        """The caller's own tokens; for an admin, everyone's, narrowed by `?user=` when given."""
        tokens = visible_tokens(self.request)
        user = text_param(self.request, "user")
        return tokens.filter(user__username=user) if user and sees_everyones_tokens(self.request) else tokens

    @extend_schema(request=TokenCreateSerializer, responses={201: TokenCreatedSerializer})
    def post(self, request: Request) -> Response:
        """Create a token for yourself; its raw value is in this response only. Created with a
        token, it is no stronger than that token: its scopes, models and expiry within that
        token's. Only admins may hold the admin scope."""
        data = TokenCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token, raw = services.create_token(actor=Actor.from_request(request), user=request.user, **data.validated_data)
        body = TokenSerializer(token).data
        body["token"] = raw
        return Response(body, status=status.HTTP_201_CREATED)


def sees_everyones_tokens(request: Request) -> bool:
    """An admin in a browser session, or with a token that holds the `admin` scope: a narrower
    token of an admin reaches only the admin's own tokens."""
    token = request_token(request)
    return bool(request.user.is_superuser) and (token is None or token.has_scope("admin"))


def visible_tokens(request: Request) -> QuerySet[ApiToken]:
    """The tokens the caller may see and revoke; any other answers 404, as unseen models do."""
    tokens = ApiToken.objects.select_related("user")
    caller = request.user
    assert caller.is_authenticated  # HasScope refuses anonymous callers; this tells mypy
    return tokens if sees_everyones_tokens(request) else tokens.filter(user=caller)


class TokenDetailView(APIView):
    """One of your tokens (admins, in a session or with an `admin` token: anyone's), by id."""

    scopes = {"DELETE": "read"}  # revoking your own token needs no more than holding it

    def _token(self, request: Request, token_id: int) -> ApiToken:
        token = visible_tokens(request).filter(pk=token_id).first()
        if token is None:
            raise NotFound(f"token {token_id} not found")
        return token

    @extend_schema(responses=TokenSerializer)
    def get(self, request: Request, token_id: int) -> Response:
        """The token's name, scopes, models and dates (never its value)."""
        return Response(TokenSerializer(self._token(request, token_id)).data)

    @extend_schema(responses=TokenSerializer)
    def delete(self, request: Request, token_id: int) -> Response:
        """Revoke the token (again: no change) and return it with its revocation time."""
        token = services.revoke_token(actor=Actor.from_request(request), token=self._token(request, token_id))
        return Response(TokenSerializer(token).data)


AUDIT_FILTERS = [
    OpenApiParameter("action", str, description="Exactly, or a prefix ending in '.' or '*' (`rollout.`)"),
    OpenApiParameter("actor", str, description="A username, exactly"), OpenApiParameter("object_type", str),
    OpenApiParameter("object_id", str), OpenApiParameter("team", str, description="Events of the team's objects"),
    OpenApiParameter("since", str, description="ISO 8601, inclusive"),
    OpenApiParameter("until", str, description="ISO 8601, exclusive"),
]


class AuditEventListView(generics.ListAPIView):
    """The audit log, newest first (admins only)."""

    serializer_class = AuditEventSerializer
    scopes = {"GET": "admin"}

    def get_queryset(self) -> QuerySet[AuditEvent]:
        """Events matching the filters sent, read as the console's audit page reads them
        (console.audit_filters.filter_events: the same filters for the page, its exports and here)."""
        return filter_events(self.request.query_params)[0]

    @extend_schema(parameters=AUDIT_FILTERS)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)
