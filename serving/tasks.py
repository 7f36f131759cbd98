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
