"""Beat tasks of the serving side: rollout gates and metric rollups."""

import logging

from celery import shared_task

from console.tasks import skipped_while_database_down
from serving import rollouts, rollups

logger = logging.getLogger(__name__)


@shared_task(name="serving.tasks.evaluate_rollouts", ignore_result=True)
@skipped_while_database_down
def evaluate_rollouts() -> dict[int, str]:
    """Judge every running rollout's current step (serving.rollouts.tick)."""
    outcomes = {}
    for rollout_id in rollouts.running_ids():
        try:
            outcomes[rollout_id] = rollouts.tick(rollout_id)
        except Exception:  # noqa: BLE001 - one broken rollout must not stop the others' gates
            logger.exception("gate check of rollout %s failed", rollout_id)
            outcomes[rollout_id] = "error"
    return outcomes


@shared_task(name="serving.tasks.roll_up_metrics", ignore_result=True)
@skipped_while_database_down
def roll_up_metrics() -> dict[str, int]:
    """Keep the live figures in Postgres (serving.rollups.roll_up)."""
    return rollups.roll_up()


@shared_task(name="serving.tasks.requeue_stale_job_chunks", ignore_result=True)
@skipped_while_database_down
def requeue_stale_job_chunks() -> int:
    """Queue again the batch-job chunks a dead worker left running (lease lapsed) or a lost
    message left pending, and the assemblies nobody is doing (serving.jobs.services)."""
    from serving.jobs import recovery, services

    chunks = recovery.stale_chunks()
    for chunk in chunks:
        services.queue_chunks(chunk.job_id, [chunk.index])
    assemblies = recovery.stale_assemblies()
    for job_id in assemblies:
        services.queue_assembly(job_id)
    return len(chunks) + len(assemblies)


@shared_task(name="serving.tasks.remove_expired_job_files", ignore_result=True)
@skipped_while_database_down
def remove_expired_job_files() -> int:
    """Retention: remove the files of jobs that ended over PADDOCK_JOB_RETENTION_DAYS ago."""
    from serving.jobs import services

    return services.remove_expired_files()


@shared_task(name="serving.tasks.run_due_job_schedules", ignore_result=True)
@skipped_while_database_down
def run_due_job_schedules() -> int:
    """Submit a job for each enabled schedule whose cron time has come, once however many beats
    ask (serving.jobs.schedules.run_due_schedules); how many were submitted."""
    from django.utils import timezone

    from serving.jobs import schedules

    return schedules.run_due_schedules(now=timezone.now())
