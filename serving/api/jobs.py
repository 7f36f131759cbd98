"""The batch-jobs API, under /api/v1/models/{name}/jobs/: submit (multipart), list, one job with
its progress, cancel, and the output streamed with its sha256. Thin: parse, check access, call
serving.jobs.services, serialize."""

from typing import Any

from django.http import FileResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from console.access import get_visible_model, request_token, require_engineer
from console.audit import Actor
from console.errors import InvalidInput, NotFound
from registry.models import RegisteredModel
from serving.jobs import services
from serving.models import BatchJob, JobState


class JobSerializer(serializers.ModelSerializer[BatchJob]):
    """A job as the API shows it: what was asked, where it is, and its progress."""

    id = serializers.UUIDField(source="uid", read_only=True)
    model = serializers.CharField(source="model.name", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    created_by = serializers.CharField(source="created_by.username", default=None, read_only=True)
    progress = serializers.SerializerMethodField()
    output_url = serializers.SerializerMethodField()

    class Meta:
        model = BatchJob
        fields = ["id", "model", "version", "state", "input_name", "input_format", "input_bytes", "input_sha256",
                  "output_format", "chunk_size", "chunks_total", "rows_total", "progress", "error",
                  "output_bytes", "output_sha256", "output_url", "created_by", "created_at", "started_at",
                  "finished_at", "files_removed_at"]
        read_only_fields = fields

    def get_progress(self, job: BatchJob) -> dict[str, Any]:
        """Rows done of the total, rows per second and the seconds left at that pace."""
        return services.describe(job)

    def get_output_url(self, job: BatchJob) -> str | None:
        """Where the output is downloaded, once there is one."""
        if job.state != JobState.SUCCEEDED or job.files_removed_at:
            return None
        return f"/api/v1/models/{job.model.name}/jobs/{job.uid}/output/"


class JobSubmitSerializer(serializers.Serializer[Any]):
    """A job's submission: the file and, optionally, the version, chunk size and formats."""

    file = serializers.FileField(allow_empty_file=True,  # empty: "the file has no rows", as for a header alone
                                 help_text="NPY, NPZ, Parquet, CSV or JSONL (docs/jobs.md)")
    version = serializers.IntegerField(required=False, min_value=1,
                                       help_text="Default: the version the deployment serves now (pinned)")
    chunk_size = serializers.IntegerField(required=False, min_value=1, help_text="Rows per chunk")
    format = serializers.CharField(required=False, help_text="Default: from the file name's extension")
    output_format = serializers.CharField(required=False, help_text="Default: the input's format")


def _model(request: Request, name: str) -> RegisteredModel:
    return get_visible_model(request.user, name, request_token(request))


def _job(model: RegisteredModel, job_id: str) -> BatchJob:
    job = services.find_job(model, job_id)
    if job is None:
        raise NotFound(f"model '{model.name}' has no job {job_id}")
    return job


def _first_error(errors: dict[str, Any]) -> str:
    field, problems = next(iter(errors.items()))
    return f"'{field}': {problems[0]}" if isinstance(problems, list) else f"'{field}': {problems}"


class JobListView(APIView):
    """A model's batch jobs, newest first; POST submits one (engineers of the model's team)."""

    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(responses=JobSerializer(many=True))
    def get(self, request: Request, name: str) -> Response:
        """The model's latest 100 jobs, newest first, each with its progress."""
        model = _model(request, name)
        jobs = BatchJob.objects.select_related("model", "version", "created_by").filter(model=model)[:100]
        return Response(JobSerializer(jobs, many=True).data)

    @extend_schema(request={"multipart/form-data": JobSubmitSerializer}, responses={201: JobSerializer})
    def post(self, request: Request, name: str) -> Response:
        """Check the file against the version's signature (400 naming the column and row), store
        it and queue its chunks; 413 past PADDOCK_MAX_JOB_INPUT_BYTES."""
        model = _model(request, name)
        require_engineer(request.user, model)
        if request.FILES.get("file") is None:
            raise InvalidInput("send the input file as the multipart field 'file'")
        data = JobSubmitSerializer(data=request.data)
        if not data.is_valid():
            raise InvalidInput(_first_error(data.errors))
        options = data.validated_data
        job = services.submit_job(actor=Actor.from_request(request), model=model, upload=options["file"],
                                  version=options.get("version"), chunk_size=options.get("chunk_size"),
                                  input_format=options.get("format"), output_format=options.get("output_format"))
        return Response(JobSerializer(_job(model, str(job.uid))).data, status=201)


class JobDetailView(APIView):
    """One job, by id, with its progress."""

    @extend_schema(responses=JobSerializer)
    def get(self, request: Request, name: str, job_id: str) -> Response:
        """The job: state, progress (rows done/total, rows/s, ETA), error, output checksum."""
        return Response(JobSerializer(_job(_model(request, name), job_id)).data)


class JobCancelView(APIView):
    """Cancel a live job (engineers of the model's team); 409 once it has ended."""

    @extend_schema(request=None, responses=JobSerializer, operation_id="v1_jobs_cancel")
    def post(self, request: Request, name: str, job_id: str) -> Response:
        """Stop the job: running chunks stop after their current inference; its work files go."""
        model = _model(request, name)
        require_engineer(request.user, model)
        job = services.cancel_job(actor=Actor.from_request(request), job=_job(model, job_id))
        return Response(JobSerializer(_job(model, str(job.uid))).data)


class JobOutputView(APIView):
    """The job's output file, streamed, with its sha256 in `Digest`-style headers."""

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    def get(self, request: Request, name: str, job_id: str) -> FileResponse:
        """The output (409 until the job succeeded; 404 once retention removed it)."""
        return services.output_response(_job(_model(request, name), job_id))
