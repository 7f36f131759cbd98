from typing import Any

from rest_framework import serializers

from serving.models import Deployment


class DeploymentSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name", read_only=True)
    active_version = serializers.IntegerField(source="active_version.number", allow_null=True, required=False)
    serving_version = serializers.SerializerMethodField(help_text="The version traffic goes to now")
    updated_by = serializers.CharField(source="updated_by.username", read_only=True, default=None)

    class Meta:
        model = Deployment
        fields = ["model", "active_version", "serving_version", "max_batch_size", "max_queue_delay_ms",
                  "preferred_batch_sizes", "max_queue_depth", "default_timeout_ms", "min_workers",
                  "updated_at", "updated_by"]
        read_only_fields = ["model", "serving_version", "updated_at", "updated_by"]

    def get_serving_version(self, deployment: Deployment) -> int | None:
        from serving.routes import load_model_route

        route = load_model_route(deployment.model.name)
        return route.active if route else None


class DeploymentUpdateSerializer(serializers.Serializer):
    active_version = serializers.IntegerField(min_value=1, allow_null=True, required=False,
                                              help_text="null: the champion alias, else the newest ready version")
    max_batch_size = serializers.IntegerField(min_value=0, max_value=4096, required=False)
    max_queue_delay_ms = serializers.IntegerField(min_value=0, max_value=10_000, required=False)
    preferred_batch_sizes = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False)
    max_queue_depth = serializers.IntegerField(min_value=1, max_value=1_000_000, required=False)
    default_timeout_ms = serializers.IntegerField(min_value=1, max_value=3_600_000, required=False)
    min_workers = serializers.IntegerField(min_value=1, max_value=1024, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("send at least one setting to change")
        return attrs


class HeldVersionSerializer(serializers.Serializer):
    model = serializers.CharField()
    number = serializers.IntegerField()
    provider = serializers.CharField()
    batches = serializers.IntegerField()
    rows = serializers.IntegerField()


class WorkerSerializer(serializers.Serializer):
    name = serializers.CharField()
    host = serializers.CharField()
    pid = serializers.IntegerField()
    memory_bytes = serializers.IntegerField()
    seconds_since_heartbeat = serializers.FloatField()
    versions = HeldVersionSerializer(many=True)
