"""The stream-bindings API, under /api/v1/models/{name}/streams/: list (with the figures the
workers publish), create (JSON), one binding, delete, pause and resume. Thin: parse, check
access, call serving.streams.services, serialize. A Redis URL is shown without its password."""

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from console.access import get_visible_model, request_token, require_engineer
from console.audit import Actor
from console.errors import InvalidInput, NotFound
from registry.models import RegisteredModel
from serving.models import StreamBinding
from serving.models.streams import redacted_url
from serving.streams import services


class StreamBindingSerializer(serializers.ModelSerializer[StreamBinding]):
    """A binding as the API shows it: its streams, options, state and the workers' figures
    (`figures` null while Redis cannot be reached)."""

    model = serializers.CharField(source="model.name", read_only=True)
    redis = serializers.SerializerMethodField(help_text="The Redis it reads, without a password; '' for Paddock's")
    created_by = serializers.CharField(source="created_by.username", default=None, read_only=True)
    figures = serializers.SerializerMethodField()

    class Meta:
        model = StreamBinding
        fields = ["name", "model", "redis", "source", "group", "sink", "dead_letter", "start", "output_format",
                  "batch_size", "state", "figures", "created_by", "created_at", "updated_at"]
        read_only_fields = fields

    def get_redis(self, binding: StreamBinding) -> str:
        """The Redis URL with its password masked."""
        return redacted_url(binding.redis_url)

    def get_figures(self, binding: StreamBinding) -> dict[str, Any] | None:
        """lag (pending + undelivered, null unless a worker said lately), pending, undelivered,
        fresh, and the counters read, predicted, dead and rows."""
        found = self.context.get("figures")
        return None if found is None else found.get(binding.pk)


# The schema's view of the JSON body (the services check every value). Inline: a serializer class
# cannot declare a field named `source`, which DRF's Field already uses.
CREATE_BODY = inline_serializer("StreamBindingCreate", fields={
    "name": serializers.SlugField(max_length=services.MAX_NAME),
    "source": serializers.CharField(max_length=services.MAX_KEY),
    "group": serializers.CharField(required=False, help_text="The consumer group (default 'paddock')"),
    "sink": serializers.CharField(required=False, help_text="Default: <source>:predictions"),
    "dead_letter": serializers.CharField(required=False, help_text="Default: <source>:dead"),
    "redis_url": serializers.CharField(required=False, help_text="Default: Paddock's Redis (keys under '<team>:')"),
    "start": serializers.ChoiceField(choices=services.STARTS, required=False),
    "output_format": serializers.ChoiceField(choices=services.OUTPUT_FORMATS, required=False),
    "batch_size": serializers.IntegerField(min_value=1, max_value=services.MAX_BATCH, required=False),
})

TEXT_FIELDS = ("name", "source", "group", "sink", "dead_letter", "redis_url", "start", "output_format")


def _options(body: Any) -> dict[str, Any]:
    """The create body's fields, typed; InvalidInput naming the first that is not."""
    if not isinstance(body, dict):
        raise InvalidInput("send a JSON object")
    unknown = sorted(set(body) - {*TEXT_FIELDS, "batch_size"})
    if unknown:
        raise InvalidInput(f"unknown field '{unknown[0]}'")
    for field in ("name", "source"):
        if field not in body:
            raise InvalidInput(f"'{field}' is required")
    options = {field: body[field] for field in (*TEXT_FIELDS, "batch_size") if field in body}
    for field in TEXT_FIELDS:
        if field in options and not isinstance(options[field], str):
            raise InvalidInput(f"'{field}' must be a string")
    return options


def _model(request: Request, name: str) -> RegisteredModel:
    return get_visible_model(request.user, name, request_token(request))


def _binding(model: RegisteredModel, name: str) -> StreamBinding:
    binding = services.find_binding(model, name)
    if binding is None:
        raise NotFound(f"model '{model.name}' has no stream binding '{name}'")
    return binding


def _shown(binding: StreamBinding) -> dict[str, Any]:
    return StreamBindingSerializer(binding, context={"figures": services.figures([binding])}).data


class StreamBindingListView(APIView):
    """A model's stream bindings with their figures; POST creates one (engineers of its team)."""

    parser_classes = [JSONParser]

    @extend_schema(responses=StreamBindingSerializer(many=True))
    def get(self, request: Request, name: str) -> Response:
        """Every binding of the model, by name, with its lag and counters."""
        bindings = list(StreamBinding.objects.select_related("model", "created_by").filter(model=_model(request, name)))
        context = {"figures": services.figures(bindings)}
        return Response(StreamBindingSerializer(bindings, many=True, context=context).data)

    @extend_schema(request=CREATE_BODY, responses={201: StreamBindingSerializer})
    def post(self, request: Request, name: str) -> Response:
        """Bind a stream: 400 naming what is refused, 409 for a name taken or no version served."""
        model = _model(request, name)
        require_engineer(request.user, model)
        binding = services.create_binding(actor=Actor.from_request(request), model=model, **_options(request.data))
        return Response(_shown(_binding(model, binding.name)), status=201)


class StreamBindingDetailView(APIView):
    """One binding, by name; DELETE removes it (its streams and consumer group stay)."""

    @extend_schema(responses=StreamBindingSerializer)
    def get(self, request: Request, name: str, binding: str) -> Response:
        """The binding with its figures."""
        return Response(_shown(_binding(_model(request, name), binding)))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, name: str, binding: str) -> Response:
        """Remove the binding (engineers of the model's team); the user's streams are left alone."""
        model = _model(request, name)
        require_engineer(request.user, model)
        services.delete_binding(actor=Actor.from_request(request), binding=_binding(model, binding))
        return Response(status=204)


class StreamBindingActionView(APIView):
    """pause or resume a binding (engineers of the model's team); 409 when it is already so."""

    @extend_schema(request=None, responses={200: StreamBindingSerializer, 409: OpenApiTypes.OBJECT},
                   operation_id="v1_streams_action")
    def post(self, request: Request, name: str, binding: str, action: str) -> Response:
        """pause: the workers stop reading its source within a second; resume: they read it again
        from where its consumer group stopped."""
        verb = {"pause": services.pause_binding, "resume": services.resume_binding}.get(action)
        if verb is None:
            raise NotFound(f"no action '{action}' for stream bindings: pause or resume")
        model = _model(request, name)
        require_engineer(request.user, model)
        changed = verb(actor=Actor.from_request(request), binding=_binding(model, binding))
        return Response(_shown(_binding(model, changed.name)))
