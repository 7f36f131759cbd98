"""Celery tasks of the registry: validating a version in its runtime, and re-queueing the
validations a dead worker left behind."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from console.audit import Actor
from registry import services
from registry.choices import VersionStatus
from registry.models import ModelVersion
from registry.validation import ValidationFailed, validate_artifact

logger = logging.getLogger(__name__)


@shared_task(name="registry.tasks.validate_version", acks_late=True)
def validate_version(version_id: int, retry_stale: bool = False) -> str:
    """Load the version in its runtime and smoke-test it; idempotent (claims the row first)."""
    actor = Actor.system("worker")
    stale_before = timezone.now() - timedelta(seconds=settings.PADDOCK_VALIDATION_STALE_SECONDS)
    if not services.claim_validation(actor=actor, version_id=version_id,
                                     stale_before=stale_before if retry_stale else None):
        return "already claimed or done"
    version = ModelVersion.objects.select_related("model").get(pk=version_id)
    try:
        with services.local_artifact(version) as path:
            report = validate_artifact(
                path, fmt=version.format, inputs=version.inputs, outputs=version.outputs,
                max_batch=settings.PADDOCK_VALIDATION_MAX_BATCH,
            )
    except ValidationFailed as exc:
        services.finish_validation(actor=actor, version_id=version_id, report=None, error=str(exc))
        return "failed"
    except Exception as exc:  # noqa: BLE001 - an unexpected error must still end the validation
        logger.exception("validation of version %s crashed", version_id)
        services.finish_validation(actor=actor, version_id=version_id, report=None,
                                   error=f"validation crashed: {type(exc).__name__}: {exc}")
        return "failed"
    services.finish_validation(actor=actor, version_id=version_id, report=report)
    return "ready"


@shared_task(name="registry.tasks.requeue_stale_validations")
def requeue_stale_validations() -> int:
    """Queue again what a dead worker left half-done: pending versions older than a minute and
    validations that started too long ago."""
    now = timezone.now()
    stale = ModelVersion.objects.filter(
        status=VersionStatus.VALIDATING,
        validation_started_at__lt=now - timedelta(seconds=settings.PADDOCK_VALIDATION_STALE_SECONDS),
    ).values_list("pk", flat=True)
    forgotten = ModelVersion.objects.filter(
        status=VersionStatus.PENDING, created_at__lt=now - timedelta(minutes=1)
    ).values_list("pk", flat=True)
    for version_id in stale:
        validate_version.delay(version_id, retry_stale=True)
    for version_id in forgotten:
        validate_version.delay(version_id)
    return len(stale) + len(forgotten)
