"""The registry API's request and response shapes: models, versions, aliases."""

from typing import Any

from rest_framework import serializers

from console.models import Team
from registry.cards import MAX_MARKDOWN_CHARS, MAX_URL_CHARS, render_card
from registry.choices import ArtifactFormat
from registry.models import Alias, ModelVersion, RegisteredModel


class TensorSerializer(serializers.Serializer):
    """One input or output of a version's signature, named and typed as in the v2 protocol."""

    name = serializers.CharField()
    datatype = serializers.CharField()
    shape = serializers.ListField(child=serializers.IntegerField(), help_text="-1 marks a dynamic axis")


class VersionSerializer(serializers.ModelSerializer):
    """A version as stored: its artifact, signature, validation outcome and the aliases on it."""

    model = serializers.CharField(source="model.name", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    inputs = TensorSerializer(many=True, read_only=True)
    outputs = TensorSerializer(many=True, read_only=True)
    aliases = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "model", "number", "status", "status_reason", "format", "original_filename", "sha256", "size",
            "metadata", "inputs", "outputs", "description", "validation_report", "aliases",
            "created_by", "created_at", "validated_at",
        ]
        read_only_fields = fields

    def get_aliases(self, version: ModelVersion) -> list[str]:
        """Names of the aliases pointing at this version, sorted."""
        return sorted(alias.name for alias in version.aliases.all())


class VersionUploadSerializer(serializers.Serializer):
    """The multipart fields of an upload (documents the schema; the view reads them itself)."""

    artifact = serializers.FileField(help_text="The model file: .onnx or a TorchScript archive")
    format = serializers.ChoiceField(choices=ArtifactFormat.choices, required=False,
                                     help_text="Detected from the bytes when omitted")
    signature = serializers.JSONField(required=False, help_text="TorchScript only: inputs and outputs")
    description = serializers.CharField(required=False)
    external_data = serializers.ListField(child=serializers.FileField(), required=False,
                                          help_text="Files the ONNX model reads as external data")


class ModelSerializer(serializers.ModelSerializer):
    """A registered model with its aliases and its newest version."""

    team: serializers.SlugRelatedField[Team] = serializers.SlugRelatedField(slug_field="name", read_only=True)
    owner = serializers.CharField(source="owner.username", read_only=True, default=None)
    aliases = serializers.SerializerMethodField()
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = RegisteredModel
        fields = ["name", "description", "team", "owner", "tags", "aliases", "latest_version",
                  "created_at", "updated_at"]
        read_only_fields = fields

    def get_aliases(self, model: RegisteredModel) -> dict[str, int]:
        """Each alias of the model and the version number it points at."""
        return {alias.name: alias.version.number for alias in model.aliases.select_related("version")}

    def get_latest_version(self, model: RegisteredModel) -> dict[str, Any] | None:
        """Number and status of the highest-numbered version, whatever its status; null without one."""
        version = model.versions.order_by("-number").first()
        return {"number": version.number, "status": version.status} if version else None


class ModelCreateSerializer(serializers.Serializer):
    """A new model: its name and the team (by name) that will own it."""

    name = serializers.CharField(max_length=64)
    team = serializers.CharField(max_length=64)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    tags = serializers.ListField(child=serializers.CharField(max_length=64), required=False, default=list)


class ModelUpdateSerializer(serializers.Serializer):
    """The fields of a model that may change; those omitted are left as they are."""

    description = serializers.CharField(required=False, allow_blank=True)
    tags = serializers.ListField(child=serializers.CharField(max_length=64), required=False)


class AliasSerializer(serializers.ModelSerializer):
    """An alias and the version number it points at."""

    version = serializers.IntegerField(source="version.number")

    class Meta:
        model = Alias
        fields = ["name", "version", "updated_at"]


class AliasSetSerializer(serializers.Serializer):
    """The version number an alias is to point at."""

    version = serializers.IntegerField(min_value=1)


class VersionCardSerializer(serializers.ModelSerializer):
    """A version's model card: its Markdown (and that Markdown rendered to sanitised HTML),
    training metrics, source run, parent version (by number) and data set hash."""

    model = serializers.CharField(source="model.name", read_only=True)
    metrics = serializers.DictField(child=serializers.FloatField(), read_only=True)
    parent_version = serializers.IntegerField(source="parent_version.number", read_only=True, default=None)
    html = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = ["model", "number", "card_markdown", "html", "metrics", "source_run_url", "parent_version",
                  "dataset_sha256"]
        read_only_fields = fields

    def get_html(self, version: ModelVersion) -> str:
        """card_markdown as the console shows it: sanitised (no script, event handler or image)."""
        return str(render_card(version.card_markdown))


class VersionCardUpdateSerializer(serializers.Serializer):
    """The card fields to change (documents the schema; registry.cards checks them); those
    omitted stay, null or "" clears one."""

    card_markdown = serializers.CharField(required=False, allow_blank=True, allow_null=True,
                                          max_length=MAX_MARKDOWN_CHARS)
    metrics = serializers.DictField(child=serializers.FloatField(), required=False, allow_null=True,
                                    help_text="Replaces the whole object: metric name → number")
    source_run_url = serializers.URLField(required=False, allow_blank=True, allow_null=True,
                                          max_length=MAX_URL_CHARS, help_text="http:// or https://")
    parent_version = serializers.IntegerField(required=False, allow_null=True, min_value=1,
                                              help_text="An older version of the same model")
    dataset_sha256 = serializers.RegexField(r"^[0-9a-fA-F]{64}$", required=False, allow_blank=True,
                                            allow_null=True)
