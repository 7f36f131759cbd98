"""The registry's management API. Thin: parse, check access, call a service, serialize."""

import json
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.http import FileResponse, QueryDict, StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from console.access import get_visible_model, request_token, require_engineer, visible_models
from console.api import text_param
from console.audit import Actor
from console.bodylimit import MULTIPART_OVERHEAD_BYTES
from console.errors import Forbidden, InvalidInput, NotFound, PayloadTooLarge
from console.models import Membership, Team
from registry import cards, downloads, services
from registry.api.serializers import (
    AliasSerializer,
    AliasSetSerializer,
    ModelCreateSerializer,
    ModelSerializer,
    ModelUpdateSerializer,
    VersionCardSerializer,
    VersionCardUpdateSerializer,
    VersionSerializer,
    VersionUploadSerializer,
)
from registry.downloads import artifact_response
from registry.models import Alias, ModelVersion, RegisteredModel


def _model(request: Request, name: str) -> RegisteredModel:
    return get_visible_model(request.user, name, request_token(request))


def search_models(models: QuerySet[RegisteredModel], query: str, tag: str) -> QuerySet[RegisteredModel]:
    """Keep models whose name or description contains `query` (any case) and that carry `tag`
    exactly; an empty `query` or `tag` filters nothing."""
    if query:
        models = models.filter(Q(name__icontains=query) | Q(description__icontains=query))
    if tag:
        # JSON containment is not portable to SQLite; tags are few, so filter on a text match
        # and confirm in Python.
        names = [m.name for m in models.filter(tags__icontains=tag) if tag in m.tags]
        models = models.filter(name__in=names)
    return models


@extend_schema_view(get=extend_schema(parameters=[
    OpenApiParameter("q", str, description="Text in the name or description, any case"),
    OpenApiParameter("tag", str, description="A tag the model carries"),
]))
class ModelListView(generics.ListAPIView):
    """The models you can see, searched by `q` (name or description) and `tag`."""

    serializer_class = ModelSerializer

    def get_queryset(self) -> QuerySet[RegisteredModel]:
        """The caller's visible models, narrowed by the `q` and `tag` query parameters."""
        models = visible_models(self.request.user, request_token(self.request))
        return search_models(models, text_param(self.request, "q").strip(), text_param(self.request, "tag").strip())

    @extend_schema(request=ModelCreateSerializer, responses={201: ModelSerializer})
    def post(self, request: Request) -> Response:
        """Register a model in a team where you have the engineer role (admins: any team)."""
        data = ModelCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        team = team_for_new_model(request.user, data.validated_data["team"])
        model = services.create_model(
            actor=Actor.from_request(request), name=data.validated_data["name"], team=team,
            description=data.validated_data["description"], tags=data.validated_data["tags"],
        )
        return Response(ModelSerializer(model).data, status=status.HTTP_201_CREATED)


def team_for_new_model(user: Any, team_name: str) -> Team:
    """The team a new model goes to: NotFound unless `user` may see it, Forbidden unless an engineer of it."""
    team = Team.objects.filter(name=team_name).first()
    if team is None or not (
        user.is_superuser or Membership.objects.filter(user=user, team=team).exists()
    ):
        raise NotFound(f"team '{team_name}' not found")
    if not user.is_superuser and not Membership.objects.filter(user=user, team=team, role="engineer").exists():
        raise Forbidden(f"the engineer role in team '{team.name}' is required to add models to it")
    return team


class ModelDetailView(APIView):
    """One model you can see, by name."""

    @extend_schema(responses=ModelSerializer)
    def get(self, request: Request, name: str) -> Response:
        """The model, its aliases and its newest version."""
        return Response(ModelSerializer(_model(request, name)).data)

    @extend_schema(request=ModelUpdateSerializer, responses=ModelSerializer)
    def patch(self, request: Request, name: str) -> Response:
        """Change the model's description or tags (engineers of its team)."""
        model = _model(request, name)
        require_engineer(request.user, model)
        data = ModelUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        model = services.update_model(actor=Actor.from_request(request), model=model, **data.validated_data)
        return Response(ModelSerializer(model).data)


class VersionListView(APIView):
    """A model's versions, newest first; POST uploads a new one."""

    parser_classes = [MultiPartParser, FormParser, JSONParser]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """DRF's checks, then 413 for an upload whose declared length is over the limit."""
        super().initial(request, *args, **kwargs)
        # Refuse an oversized upload from its Content-Length before the parsers read it. Served
        # by uvicorn, console/bodylimit.py has already refused it (in the same words), and any
        # body, chunked or not, that streamed past the limit, before Django read it.
        if request.method == "POST":
            length = int(request.META.get("CONTENT_LENGTH") or 0)
            if length > settings.PADDOCK_MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD_BYTES:
                raise PayloadTooLarge(
                    f"upload is {length} bytes; the limit is {settings.PADDOCK_MAX_UPLOAD_BYTES} bytes"
                )

    @extend_schema(responses=VersionSerializer(many=True))
    def get(self, request: Request, name: str) -> Response:
        """Every version of the model, newest first, with its validation outcome and aliases."""
        model = _model(request, name)
        versions = model.versions.select_related("model", "created_by").prefetch_related("aliases")
        return Response(VersionSerializer(versions, many=True).data)

    @extend_schema(request={"multipart/form-data": VersionUploadSerializer}, responses={201: VersionSerializer,
                                                                                         200: VersionSerializer})
    def post(self, request: Request, name: str) -> Response:
        """Upload an artifact as a new version (engineers of the model's team); validation is queued.
        The same bytes uploaded again return the existing version with 200 and `X-Paddock-Duplicate: true`."""
        model = _model(request, name)
        require_engineer(request.user, model)
        upload = request.FILES.get("artifact")
        if upload is None:
            raise InvalidInput("send the model file as the multipart field 'artifact'")
        version, created = services.register_version(
            actor=Actor.from_request(request), model=model, upload=upload,
            declared_format=request.data.get("format", "") or "",
            signature=parse_json_field(request.data.get("signature"), "signature"),
            description=request.data.get("description", "") or "",
            external_data=request.FILES.getlist("external_data"),
        )
        body = VersionSerializer(version).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
                        headers={"X-Paddock-Duplicate": "false" if created else "true"})


def parse_json_field(raw: Any, field: str) -> Any:
    """A JSON form field's value: parsed when sent as text (multipart), as is when already
    parsed (JSON body), None when absent or empty; InvalidInput when not JSON."""
    if raw is None or isinstance(raw, (dict, list)):
        return raw
    if raw == "":
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"'{field}' is not valid JSON: {exc.msg} at position {exc.pos}") from None


def _version(model: RegisteredModel, number: int) -> ModelVersion:
    version = model.versions.filter(number=number).select_related("model", "created_by").first()
    if version is None:
        raise NotFound(f"model '{model.name}' has no version {number}")
    return version


class VersionDetailView(APIView):
    """One version of a model, by number."""

    @extend_schema(responses=VersionSerializer)
    def get(self, request: Request, name: str, number: int) -> Response:
        """The version: its artifact, signature, validation outcome and aliases."""
        return Response(VersionSerializer(_version(_model(request, name), number)).data)


class AliasListView(APIView):
    """A model's aliases."""

    @extend_schema(responses=AliasSerializer(many=True))
    def get(self, request: Request, name: str) -> Response:
        """Every alias of the model and the version it points at."""
        aliases = _model(request, name).aliases.select_related("version")
        return Response(AliasSerializer(aliases, many=True).data)


class AliasDetailView(APIView):
    """One alias of a model: read it, point it at a version, or remove it."""

    def _alias(self, model: RegisteredModel, alias: str) -> Alias:
        found = None if "\x00" in alias else model.aliases.select_related("version").filter(name=alias).first()
        if found is None:
            raise NotFound(f"model '{model.name}' has no alias '{alias}'")
        return found

    @extend_schema(responses=AliasSerializer)
    def get(self, request: Request, name: str, alias: str) -> Response:
        """The alias and the version it points at."""
        return Response(AliasSerializer(self._alias(_model(request, name), alias)).data)

    @extend_schema(request=AliasSetSerializer, responses=AliasSerializer)
    def put(self, request: Request, name: str, alias: str) -> Response:
        """Point the alias at a version, creating it if needed (engineers of the model's team).
        A version that failed validation cannot carry an alias."""
        model = _model(request, name)
        require_engineer(request.user, model)
        data = AliasSetSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = _version(model, data.validated_data["version"])
        moved = services.set_alias(actor=Actor.from_request(request), model=model, name=alias, version=version)
        return Response(AliasSerializer(moved).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, name: str, alias: str) -> Response:
        """Remove the alias (engineers of the model's team); its version stays."""
        model = _model(request, name)
        require_engineer(request.user, model)
        services.delete_alias(actor=Actor.from_request(request), alias=self._alias(model, alias))
        return Response(status=status.HTTP_204_NO_CONTENT)


# Routes with and without the trailing slash pass the number as digits: documented as the integer it is.
_NUMBER = OpenApiParameter("number", int, OpenApiParameter.PATH, description="The version's number")


class VersionArtifactView(APIView):
    """The version's artifact, streamed as an attachment and audited (`version.downloaded`)."""

    def perform_content_negotiation(self, request: Request, force: bool = False) -> tuple[BaseRenderer, str]:
        """Any Accept header (`application/zip`, `application/octet-stream`) gets the file; only
        an error is rendered, as JSON."""
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(parameters=[_NUMBER],
                   responses={(200, "application/octet-stream"): bytes, (200, "application/zip"): bytes})
    def get(self, request: Request, name: str, number: str) -> FileResponse | StreamingHttpResponse:
        """The model file as uploaded, or a zip of it and its external data files under their
        relative names; `X-Checksum-Sha256` is the version's sha256 (for a zip, its checksum over
        the files, docs/api.md), `ETag` the same."""
        version = _version(_model(request, name), int(number))
        return artifact_response(downloads.download_version(actor=Actor.from_request(request), version=version))


class VersionCardView(APIView):
    """The version's model card: read it, or change some of its fields (engineers of the team)."""

    def _version(self, request: Request, name: str, number: str) -> ModelVersion:
        return _version(_model(request, name), int(number))

    @extend_schema(parameters=[_NUMBER], responses=VersionCardSerializer)
    def get(self, request: Request, name: str, number: str) -> Response:
        """The card, its Markdown also rendered as sanitised HTML."""
        return Response(VersionCardSerializer(self._version(request, name, number)).data)

    @extend_schema(parameters=[_NUMBER], request=VersionCardUpdateSerializer, responses=VersionCardSerializer)
    def patch(self, request: Request, name: str, number: str) -> Response:
        """Change the fields sent; 400 names a field that does not fit (a metric that is not a
        number, a URL that is not http(s), a hash that is not 64 hex, a parent that is not an
        older version of this model)."""
        version = self._version(request, name, number)
        require_engineer(request.user, version.model)
        data = request.data
        changes = data.dict() if isinstance(data, QueryDict) else data
        version = cards.update_version_card(actor=Actor.from_request(request), version=version, changes=changes)
        return Response(VersionCardSerializer(version).data)
