"""Registered models, their immutable versions, and aliases that point at one version each."""

from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from registry.choices import ArtifactFormat, VersionStatus

slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$",
    "use 1-64 lowercase letters, digits, '-' or '_', starting and ending with a letter or digit",
)


class RegisteredModel(models.Model):
    """A named model owned by a team; its artifacts are its versions."""

    name = models.CharField(max_length=64, unique=True, validators=[slug_validator])
    description = models.TextField(blank=True)
    team = models.ForeignKey("console.Team", on_delete=models.PROTECT, related_name="models")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="owned_models"
    )
    tags = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def snapshot(self) -> dict[str, Any]:
        """The audit log's view of the model."""
        return {
            "name": self.name,
            "description": self.description,
            "team": self.team.name,
            "owner": self.owner.username if self.owner else None,
            "tags": list(self.tags),
        }


def artifact_path(version: "ModelVersion", filename: str) -> str:
    """Storage path of an uploaded file: models/<model>/<version number>/<filename>."""
    # Each version owns a folder: external-data files must stay inside it.
    return f"models/{version.model.name}/{version.number}/{filename}"


class ImmutableFieldError(Exception):
    """A save of a stored version that would change more than its validation outcome."""


class ModelVersion(models.Model):
    """An immutable artifact plus what Paddock learnt about it. Only the validation outcome
    (status, reason, report) and the model card (what people write about it) change after creation."""

    MUTABLE_FIELDS = frozenset({"status", "status_reason", "validation_report", "validated_at"})
    # The model card: written by people after the upload (registry.cards.update_version_card),
    # never part of the artifact or its checksum.
    CARD_FIELDS = frozenset({"card_markdown", "metrics", "source_run_url", "parent_version", "dataset_sha256"})

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    artifact = models.FileField(upload_to=artifact_path, max_length=300)
    original_filename = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField()
    format = models.CharField(max_length=16, choices=ArtifactFormat.choices)
    metadata = models.JSONField(default=dict, blank=True, help_text="producer, opset, IR version")
    inputs = models.JSONField(default=list)
    outputs = models.JSONField(default=list)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=VersionStatus.choices, default=VersionStatus.PENDING)
    status_reason = models.TextField(blank=True)
    validation_report = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    validation_started_at = models.DateTimeField(null=True, blank=True)
    # Claims of its validation: one that never finished (its worker died) is retried up to
    # PADDOCK_VALIDATION_MAX_ATTEMPTS, then the version fails.
    validation_attempts = models.PositiveSmallIntegerField(default=0)
    validated_at = models.DateTimeField(null=True, blank=True)
    card_markdown = models.TextField(blank=True, help_text="The model card: Markdown, shown sanitised")
    metrics = models.JSONField(default=dict, blank=True, help_text="Training metrics: name → number")
    source_run_url = models.URLField(max_length=500, blank=True, help_text="The training run (http or https)")
    parent_version = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True,
                                       related_name="children", help_text="An older version of the same model")
    dataset_sha256 = models.CharField(max_length=64, blank=True, help_text="sha256 of the training data set")

    class Meta:
        ordering = ["model", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["model", "number"], name="one_number_per_model"),
            models.UniqueConstraint(fields=["model", "sha256"], name="one_version_per_checksum"),
        ]

    def __str__(self) -> str:
        return f"{self.model.name} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Insert freely; once stored, only with update_fields among MUTABLE_FIELDS, CARD_FIELDS and
        validation_started_at."""
        if not self._state.adding:
            fields = kwargs.get("update_fields")
            if fields is None or not set(fields) <= self.MUTABLE_FIELDS | self.CARD_FIELDS | {"validation_started_at"}:
                raise ImmutableFieldError(
                    "a model version is immutable: save(update_fields=...) with only "
                    + ", ".join(sorted(self.MUTABLE_FIELDS | self.CARD_FIELDS))
                )
        super().save(*args, **kwargs)

    def is_servable(self) -> bool:
        """Only a version that passed validation takes traffic."""
        return self.status == VersionStatus.READY

    def snapshot(self) -> dict[str, Any]:
        """The audit log's view of the version."""
        return {
            "model": self.model.name,
            "number": self.number,
            "sha256": self.sha256,
            "size": self.size,
            "format": self.format,
            "status": self.status,
        }

    def card_snapshot(self) -> dict[str, Any]:
        """The audit log's (and the API's) view of the model card: the parent by its number."""
        return {
            "card_markdown": self.card_markdown,
            "metrics": dict(self.metrics),
            "source_run_url": self.source_run_url,
            "parent_version": self.parent_version.number if self.parent_version else None,
            "dataset_sha256": self.dataset_sha256,
        }


class Alias(models.Model):
    """A movable name (`champion`, `challenger`, any slug) for one version of a model."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="aliases")
    name = models.CharField(max_length=64, validators=[slug_validator])
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model", "name"]
        constraints = [models.UniqueConstraint(fields=["model", "name"], name="one_alias_name_per_model")]

    def __str__(self) -> str:
        return f"{self.model.name}@{self.name}"
