"""The recurring-jobs API, under /api/v1/models/{name}/schedules/: list, create (JSON), one
schedule, delete, enable and disable; each schedule with its next run time and its last runs.
Thin: parse, check access, call serving.jobs.schedules, serialize."""

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
from serving.jobs import schedules, services
from serving.models import JobSchedule

FIELDS = ("name", "cron", "template", "version")
REQUIRED = ("name", "cron", "template")


class JobScheduleSerializer(serializers.ModelSerializer[JobSchedule]):
    """A schedule as the API shows it: what it repeats, when it runs next, and its last runs."""

    model = serializers.CharField(source="model.name", read_only=True)
    version = serializers.IntegerField(source="version.number", default=None, read_only=True,
                                       help_text="null: what the deployment serves at each run")
    template = serializers.UUIDField(source="template.uid", read_only=True, help_text="The job each run repeats")
    next_run_at = serializers.SerializerMethodField()
    runs = serializers.SerializerMethodField()
    last_failure = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.username", default=None, read_only=True)

    class Meta:
        model = JobSchedule
        fields = ["name", "model", "cron", "version", "template", "enabled", "next_run_at", "runs", "last_failure",
                  "created_by", "created_at"]
        read_only_fields = fields

    def get_next_run_at(self, schedule: JobSchedule) -> str | None:
        """When the cron fires next (UTC); null while disabled."""
        fire = schedules.next_run_at(schedule)
        return serializers.DateTimeField().to_representation(fire) if fire else None

    def get_runs(self, schedule: JobSchedule) -> list[dict[str, Any]]:
        """The last few jobs it submitted, newest first: id, state, version and when."""
        return [{"id": str(job.uid), "state": job.state, "version": job.version.number,
                 "created_at": serializers.DateTimeField().to_representation(job.created_at)}
                for job in schedules.recent_runs(schedule)]

    def get_last_failure(self, schedule: JobSchedule) -> dict[str, Any] | None:
        """When and why its latest run was refused (null once a run went through since)."""
        failure = schedules.last_failure(schedule)
        if failure is None:
            return None
        return {"at": serializers.DateTimeField().to_representation(failure["at"]), "reason": failure["reason"]}


CREATE_BODY = inline_serializer("JobScheduleCreate", fields={
    "name": serializers.SlugField(max_length=schedules.MAX_NAME),
    "cron": serializers.CharField(help_text="minute hour day-of-month month day-of-week (UTC), e.g. '0 3 * * *'"),
    "template": serializers.UUIDField(help_text="A job of the model whose input file remains"),
    "version": serializers.IntegerField(min_value=1, required=False, allow_null=True,
                                        help_text="Default: what the deployment serves at each run"),
})


def _model(request: Request, name: str) -> RegisteredModel:
    return get_visible_model(request.user, name, request_token(request))


def _schedule(model: RegisteredModel, name: str) -> JobSchedule:
    schedule = schedules.find_schedule(model, name)
    if schedule is None:
        raise NotFound(f"model '{model.name}' has no schedule '{name}'")
    return schedule


def _options(model: RegisteredModel, body: Any) -> dict[str, Any]:
    """The create body's fields, typed, the template found; InvalidInput naming the first that is not."""
    if not isinstance(body, dict):
        raise InvalidInput("send a JSON object")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise InvalidInput(f"unknown field '{unknown[0]}'")
    for field in REQUIRED:
        if field not in body:
            raise InvalidInput(f"'{field}' is required")
    if not isinstance(body["name"], str):
        raise InvalidInput("'name' must be a string")
    if not isinstance(body["template"], str):
        raise InvalidInput("'template' must be a job id (a UUID)")
    version = body.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        raise InvalidInput("'version' must be a version number (1 or more), or null for what the deployment "
                           "serves at each run")
    template = services.find_job(model, body["template"])
    if template is None:
        raise NotFound(f"model '{model.name}' has no job {body['template']}")
    return {"name": body["name"], "cron": body["cron"], "template": template, "version": version}


def _shown(model: RegisteredModel, name: str) -> dict[str, Any]:
    return JobScheduleSerializer(_schedule(model, name)).data


class JobScheduleListView(APIView):
    """A model's schedules; POST creates one (engineers of its team)."""

    parser_classes = [JSONParser]

    @extend_schema(responses=JobScheduleSerializer(many=True))
    def get(self, request: Request, name: str) -> Response:
        """Every schedule of the model, by name, with its next run and last runs."""
        found = JobSchedule.objects.select_related("model", "version", "template", "created_by").filter(
            model=_model(request, name))
        return Response(JobScheduleSerializer(found, many=True).data)

    @extend_schema(request=CREATE_BODY, responses={201: JobScheduleSerializer})
    def post(self, request: Request, name: str) -> Response:
        """Repeat a job on a cron schedule: 400 naming what is refused (the cron's field), 404 for
        an unknown job or version, 409 for a name taken, a version not ready or a removed file."""
        model = _model(request, name)
        require_engineer(request.user, model)
        schedule = schedules.create_schedule(actor=Actor.from_request(request), model=model,
                                             **_options(model, request.data))
        return Response(_shown(model, schedule.name), status=201)


class JobScheduleDetailView(APIView):
    """One schedule, by name; DELETE removes it (its jobs stay)."""

    @extend_schema(responses=JobScheduleSerializer)
    def get(self, request: Request, name: str, schedule: str) -> Response:
        """The schedule with its next run and last runs."""
        return Response(JobScheduleSerializer(_schedule(_model(request, name), schedule)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, name: str, schedule: str) -> Response:
        """Remove the schedule (engineers of the model's team)."""
        model = _model(request, name)
        require_engineer(request.user, model)
        schedules.delete_schedule(actor=Actor.from_request(request), schedule=_schedule(model, schedule))
        return Response(status=204)


class JobScheduleActionView(APIView):
    """enable or disable a schedule (engineers of the model's team); 409 when it is already so."""

    @extend_schema(request=None, responses={200: JobScheduleSerializer, 409: OpenApiTypes.OBJECT},
                   operation_id="v1_schedules_action")
    def post(self, request: Request, name: str, schedule: str, action: str) -> Response:
        """enable: it runs again from the next time its cron fires (runs missed meanwhile are not
        made up); disable: no more runs until enabled (a job already submitted goes on)."""
        verb = {"enable": schedules.enable_schedule, "disable": schedules.disable_schedule}.get(action)
        if verb is None:
            raise NotFound(f"no action '{action}' for schedules: enable or disable")
        model = _model(request, name)
        require_engineer(request.user, model)
        verb(actor=Actor.from_request(request), schedule=_schedule(model, schedule))
        return Response(_shown(model, schedule))
