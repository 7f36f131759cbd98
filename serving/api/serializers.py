"""The serving API's request and response shapes: deployments, workers, rollouts."""

from typing import Any

from rest_framework import serializers

from serving.models import GATE_DEFAULTS, Deployment, Rollout, RolloutEvent, RolloutStrategy
from serving.v2.wire import MAX_QUEUE_DELAY_MS


class DeploymentSerializer(serializers.ModelSerializer):
    """A model's serving settings, versions by number."""

    model = serializers.CharField(source="model.name", read_only=True)
    active_version = serializers.IntegerField(source="active_version.number", allow_null=True, required=False)
    serving_version = serializers.SerializerMethodField(help_text="The version traffic goes to now")
    updated_by = serializers.CharField(source="updated_by.username", read_only=True, default=None)
    shadow_version = serializers.IntegerField(source="shadow_version.number", allow_null=True, default=None)
    standby_version = serializers.IntegerField(source="standby_version.number", allow_null=True, default=None)

    class Meta:
        model = Deployment
        fields = ["model", "active_version", "serving_version", "routes", "shadow_version", "shadow_percent",
                  "sticky_by", "sticky_key", "standby_version", "max_batch_size", "max_queue_delay_ms",
                  "preferred_batch_sizes", "max_queue_depth", "default_timeout_ms", "min_workers",
                  "instances", "updated_at", "updated_by"]
        read_only_fields = ["model", "serving_version", "updated_at", "updated_by"]

    def get_serving_version(self, deployment: Deployment) -> int | None:
        """The active version of the model's route; null when no version is ready."""
        from serving.v2.routes import load_model_route

        route = load_model_route(deployment.model.name)
        return route.active if route else None


class RouteSerializer(serializers.Serializer):
    """One arm of a traffic split: a version number and its share in percent."""

    version = serializers.IntegerField(min_value=1)
    weight = serializers.FloatField(min_value=0, max_value=100)


class DeploymentUpdateSerializer(serializers.Serializer):
    """The settings to change; those omitted stay as they are."""

    active_version = serializers.IntegerField(min_value=1, allow_null=True, required=False,
                                              help_text="null: the champion alias (else nothing serves)")
    max_batch_size = serializers.IntegerField(min_value=0, max_value=4096, required=False)
    max_queue_delay_ms = serializers.IntegerField(min_value=0, max_value=MAX_QUEUE_DELAY_MS, required=False)
    preferred_batch_sizes = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=4096),
                                                  max_length=32, required=False)
    max_queue_depth = serializers.IntegerField(min_value=1, max_value=1_000_000, required=False)
    default_timeout_ms = serializers.IntegerField(min_value=1, max_value=3_600_000, required=False)
    min_workers = serializers.IntegerField(min_value=1, max_value=1024, required=False)
    instances = serializers.IntegerField(
        min_value=1, max_value=16, required=False,
        help_text="ONNX on CPU: copies of the model per worker that run a batch's rows side by side, each with "
                  "1/instances of the worker's intra-op threads (Triton's instance_group count)")
    routes = RouteSerializer(many=True, required=False, help_text="A weighted split; [] sends all to the active")
    shadow_version = serializers.IntegerField(min_value=1, allow_null=True, required=False)
    shadow_percent = serializers.FloatField(min_value=0, max_value=100, required=False)
    sticky_by = serializers.ChoiceField(choices=["", "header", "parameter"], required=False)
    sticky_key = serializers.CharField(max_length=100, allow_blank=True, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Refuse an update that changes nothing."""
        if not attrs:
            raise serializers.ValidationError("send at least one setting to change")
        return attrs


class HeldVersionSerializer(serializers.Serializer):
    """A version loaded in a worker, and the batches and rows it has run there."""

    model = serializers.CharField()
    number = serializers.IntegerField()
    provider = serializers.CharField()
    instances = serializers.IntegerField(default=1, help_text="Copies that split each batch (the deployment's)")
    batches = serializers.IntegerField()
    rows = serializers.IntegerField()


class WorkerSerializer(serializers.Serializer):
    """A live worker as its latest heartbeat describes it."""

    name = serializers.CharField()
    host = serializers.CharField()
    pid = serializers.IntegerField()
    memory_bytes = serializers.IntegerField()
    cpu_percent = serializers.FloatField(help_text="Since the previous heartbeat; 100 = one core")
    gpus = serializers.ListField(child=serializers.DictField(), help_text="NVML: index, name, util, memory_used/total")
    seconds_since_heartbeat = serializers.FloatField()
    versions = HeldVersionSerializer(many=True)


class RolloutStartSerializer(serializers.Serializer):
    """What to roll out and how: the candidate, the strategy, its steps and gates."""

    candidate = serializers.IntegerField(min_value=1, help_text="The version number to roll out")
    strategy = serializers.ChoiceField(choices=RolloutStrategy.values)
    steps = serializers.ListField(child=serializers.FloatField(), required=False,
                                  help_text="canary: weights, e.g. [10, 50, 100]; ab: [share]; shadow: [mirror %]")
    step_seconds = serializers.IntegerField(min_value=0, max_value=7 * 24 * 3600, default=60)
    gates = serializers.DictField(child=serializers.FloatField(), required=False, help_text="Any of: " + ", ".join(
        f"{name} (default {value})" for name, value in GATE_DEFAULTS.items()))
    require_approval = serializers.BooleanField(default=False)
    auto_promote = serializers.BooleanField(default=True)
    sticky_by = serializers.ChoiceField(choices=["", "header", "parameter"], default="")
    sticky_key = serializers.CharField(max_length=100, allow_blank=True, default="")


class RolloutEventSerializer(serializers.ModelSerializer):
    """One entry of a rollout's timeline, with the figures that decided it."""

    class Meta:
        model = RolloutEvent
        fields = ["at", "kind", "message", "figures", "actor"]


class RolloutSerializer(serializers.ModelSerializer):
    """A rollout: versions by number, its gates with their defaults, and its timeline."""

    model = serializers.CharField(source="model.name", read_only=True)
    stable_version = serializers.IntegerField(source="stable_version.number")
    candidate_version = serializers.IntegerField(source="candidate_version.number")
    gates = serializers.JSONField(source="gate_settings")
    created_by = serializers.CharField(source="created_by.username", default=None)
    approved_by = serializers.CharField(source="approved_by.username", default=None)
    events = RolloutEventSerializer(many=True, read_only=True)

    class Meta:
        model = Rollout
        fields = ["id", "model", "strategy", "state", "reason", "stable_version", "candidate_version", "steps",
                  "step_index", "step_seconds", "step_started_at", "gates", "require_approval", "auto_promote",
                  "sticky_by", "sticky_key", "last_check", "created_at", "created_by", "approved_by", "ended_at",
                  "events"]
        read_only_fields = fields


class RolloutActionSerializer(serializers.Serializer):
    """Why a person paused, resumed, promoted, rolled back or approved a rollout."""

    reason = serializers.CharField(max_length=500, allow_blank=True, default="")
