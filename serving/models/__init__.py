"""The serving app's models: deployments, rollouts and rollups (deployments.py), batch jobs
(jobs.py) and stream bindings (streams.py)."""

from serving.models.deployments import (
    DEFAULTS,
    GATE_DEFAULTS,
    Deployment,
    MetricRollup,
    Rollout,
    RolloutEvent,
    RolloutState,
    RolloutStrategy,
)
from serving.models.jobs import BatchJob, ChunkState, JobChunk, JobSchedule, JobState
from serving.models.streams import BindingState, StreamBinding

__all__ = ["DEFAULTS", "GATE_DEFAULTS", "BatchJob", "BindingState", "ChunkState", "Deployment", "JobChunk",
           "JobSchedule", "JobState", "MetricRollup", "Rollout", "RolloutEvent", "RolloutState", "RolloutStrategy",
           "StreamBinding"]
