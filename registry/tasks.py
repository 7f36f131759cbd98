"""Celery tasks of the registry: validating a version in its runtime (in a child process with
resource limits, registry/isolation.py), and re-queueing the validations a dead worker left behind."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from console.audit import Actor
from console.tasks import skipped_while_database_down
from registry import services, storage
from registry.choices import VersionStatus
from registry.isolation import Limits, Outcome, validate_in_child
from registry.models import ModelVersion

logger = logging.getLogger(__name__)


@shared_task(name="registry.tasks.validate_version", acks_late=True)
def validate_version(version_id: int, retry_stale: bool = False) -> str:
    """Load the version in its runtime and smoke-test it, in a child process under the
    PADDOCK_VALIDATION_* limits: whatever the artifact does there, the version ends `ready` or
    `failed` with the reason and this worker goes on. Idempotent (claims the row first)."""
    actor = Actor.system("worker")
    stale_before = timezone.now() - timedelta(seconds=settings.PADDOCK_VALIDATION_STALE_SECONDS)
    if not services.claim_validation(actor=actor, version_id=version_id,
                                     stale_before=stale_before if retry_stale else None):
        return "already claimed or done"
    version = ModelVersion.objects.select_related("model").get(pk=version_id)
    try:
        with storage.local_artifact(version) as path:
            outcome = validate_in_child(
                path, fmt=version.format, inputs=version.inputs, outputs=version.outputs,
                max_batch=settings.PADDOCK_VALIDATION_MAX_BATCH, limits=Limits.from_settings(),
                device=settings.PADDOCK_DEVICE,
            )
    except Exception as exc:  # noqa: BLE001 - storage or the child's start failed: still end the validation
        logger.exception("validation of version %s crashed", version_id)
        outcome = Outcome(None, f"validation crashed: {type(exc).__name__}: {exc}")
    services.finish_validation(actor=actor, version_id=version_id, report=outcome.report, error=outcome.error)
    return "failed" if outcome.error else "ready"


@shared_task(name="registry.tasks.requeue_stale_validations")
@skipped_while_database_down
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
