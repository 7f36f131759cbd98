"""Deployments: which version of a model answers, and how its requests are batched and queued;
rollouts and their timeline; rolled-up live figures."""

from typing import Any, cast

from django.conf import settings
from django.db import models
from django.utils import timezone


class Deployment(models.Model):
    """Per-model serving settings. A model without one (or without an active version) is served
    by its `champion` alias, with the defaults below; without a champion, by nothing."""

    model = models.OneToOneField("registry.RegisteredModel", on_delete=models.CASCADE, related_name="deployment")
    active_version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, null=True, blank=True,
                                       related_name="+", help_text="Empty: the champion alias")
    max_batch_size = models.PositiveIntegerField(default=64, help_text="0: no batching, one request at a time")
    max_queue_delay_ms = models.PositiveIntegerField(default=0, help_text="0: never wait when idle")
    preferred_batch_sizes = models.JSONField(default=list, blank=True)
    max_queue_depth = models.PositiveIntegerField(default=1024, help_text="Requests queued beyond this get 429")
    default_timeout_ms = models.PositiveIntegerField(default=30_000)
    min_workers = models.PositiveIntegerField(default=1, help_text="How many workers should hold the version")
    # Triton's instance_group count, for ONNX on the CPU: copies of the model in each worker, each
    # with 1/instances of the worker's intra-op threads, running batches of their own side by side.
    instances = models.PositiveIntegerField(
        default=1, help_text="ONNX on CPU: copies per worker, each running batches of its own side by side "
                             "(1: one session, every thread)")
    # Traffic split: [{"version": n, "weight": w}, ...] summing to 100; empty: all to the active version.
    routes = models.JSONField(default=list, blank=True)
    shadow_version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, null=True, blank=True,
                                       related_name="+", help_text="Mirrored requests run here after the reply")
    shadow_percent = models.FloatField(default=0.0, help_text="Share of requests mirrored to the shadow version")
    # A/B: the hash of this request header or v2 parameter pins a caller to one arm.
    sticky_by = models.CharField(max_length=10, blank=True, choices=[("", "none"), ("header", "header"),
                                                                       ("parameter", "parameter")])
    sticky_key = models.CharField(max_length=100, blank=True)
    standby_version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, null=True, blank=True,
                                        related_name="+", help_text="Held warm by workers, no traffic (blue/green)")
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")

    class Meta:
        ordering = ["model__name"]

    def __str__(self) -> str:
        return f"deployment of {self.model.name}"

    def snapshot(self) -> dict[str, Any]:
        """The audit log's view of the settings, versions by number."""
        return {
            "active_version": self.active_version.number if self.active_version else None,
            "max_batch_size": self.max_batch_size,
            "max_queue_delay_ms": self.max_queue_delay_ms,
            "preferred_batch_sizes": list(self.preferred_batch_sizes),
            "max_queue_depth": self.max_queue_depth,
            "default_timeout_ms": self.default_timeout_ms,
            "min_workers": self.min_workers,
            "instances": self.instances,
            "routes": list(self.routes),
            "shadow_version": self.shadow_version.number if self.shadow_version else None,
            "shadow_percent": self.shadow_percent,
            "sticky_by": self.sticky_by,
            "sticky_key": self.sticky_key,
            "standby_version": self.standby_version.number if self.standby_version else None,
        }


# The batching and queueing fields' defaults: what a model without a Deployment row is served with.
# Each name is a concrete column, never a relation, hence the cast: get_field() may return either.
DEFAULTS: dict[str, Any] = {
    name: cast("models.Field[Any, Any]", Deployment._meta.get_field(name)).default
    for name in ("max_batch_size", "max_queue_delay_ms", "max_queue_depth", "default_timeout_ms", "min_workers",
                 "instances")
}


class RolloutStrategy(models.TextChoices):
    """How a rollout moves traffic to its candidate (serving.rollouts)."""

    DIRECT = "direct", "direct: promote now"
    CANARY = "canary", "canary: weight steps, each held"
    BLUE_GREEN = "blue_green", "blue/green: warm, then switch at once"
    SHADOW = "shadow", "shadow: mirror only"
    AB = "ab", "A/B: fixed split until ended"


class RolloutState(models.TextChoices):
    """Where a rollout is: live (running, paused, awaiting approval) or ended (promoted, rolled back)."""

    RUNNING = "running"
    PAUSED = "paused"
    AWAITING_APPROVAL = "awaiting_approval"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"

    @classmethod
    def live(cls) -> list[str]:
        """The states of a rollout not yet ended; a model has at most one rollout in them."""
        return [cls.RUNNING, cls.PAUSED, cls.AWAITING_APPROVAL]


GATE_DEFAULTS: dict[str, Any] = {
    "max_error_rate": 0.01,  # the candidate's share of 5xx answers
    "max_p99_ratio": 1.5,  # the candidate's p99 ÷ the stable version's p99, same window
    "p99_tolerance_ms": 2.0,  # ... plus this much: a 1 ms model's p99 jitters by more than 50%
    "max_compute_ratio": 1.3,  # the candidate's median compute per row ÷ the stable version's
    "confidence": 0.999,  # a gate fails only when its figures show it this surely (serving.gates)
    "min_shadow_agreement": 0.95,  # argmax agreement of mirrored requests (shadow strategy)
    "min_requests": 50,  # answered by the candidate in the window before any judgement
    "window_seconds": 30,  # the figures judged are those of the last window_seconds
}


class Rollout(models.Model):
    """Moving a model's traffic from its stable version to a candidate, step by step, each step
    judged by its gates (serving.rollouts). At most one live rollout per model."""

    model = models.ForeignKey("registry.RegisteredModel", on_delete=models.CASCADE, related_name="rollouts")
    strategy = models.CharField(max_length=12, choices=RolloutStrategy.choices)
    stable_version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="+")
    candidate_version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="+")
    steps = models.JSONField(default=list,
                             help_text="Candidate weights (canary), its share (A/B), the mirror % (shadow)")
    step_seconds = models.PositiveIntegerField(default=60, help_text="Minimum time each step is held")
    step_index = models.IntegerField(default=0)
    step_started_at = models.DateTimeField(default=timezone.now)
    gates = models.JSONField(default=dict)
    require_approval = models.BooleanField(default=False, help_text="An admin approves before the final step")
    auto_promote = models.BooleanField(default=True, help_text="Shadow: promote when the gates pass")
    state = models.CharField(max_length=20, choices=RolloutState.choices, default=RolloutState.RUNNING)
    reason = models.TextField(blank=True)
    last_check = models.JSONField(default=dict, blank=True, help_text="The latest gate figures, decided or not")
    sticky_by = models.CharField(max_length=10, blank=True)
    sticky_key = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                    related_name="+")
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["model"], condition=models.Q(state__in=RolloutState.live()),
                                               name="one_live_rollout_per_model")]

    def __str__(self) -> str:
        return f"{self.strategy} rollout of {self.model.name} v{self.candidate_version.number}"

    @property
    def gate_settings(self) -> dict[str, Any]:
        """The rollout's gates over GATE_DEFAULTS: what its steps are judged by."""
        return {**GATE_DEFAULTS, **self.gates}

    def snapshot(self) -> dict[str, Any]:
        """The audit log's view of the rollout, versions by number and gates with their defaults."""
        return {"strategy": self.strategy, "stable": self.stable_version.number,
                "candidate": self.candidate_version.number, "steps": list(self.steps),
                "step_seconds": self.step_seconds, "step_index": self.step_index, "state": self.state,
                "gates": self.gate_settings, "require_approval": self.require_approval, "reason": self.reason}


class RolloutEvent(models.Model):
    """The rollout's timeline: every start, step, gate verdict, pause, approval and end, with the
    figures that decided it (the same figures go to the audit log)."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=30)
    message = models.TextField(blank=True)
    figures = models.JSONField(default=dict, blank=True)
    actor = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} at {self.at:%Y-%m-%d %H:%M:%S}"


class MetricRollup(models.Model):
    """A version's live figures (serving.livestats fields, merged) over one period: 10 s periods
    are kept a day, minute periods 14 days (PADDOCK_ROLLUP_*_RETENTION_HOURS). Written by the
    beat task `serving.tasks.roll_up_metrics`."""

    version = models.ForeignKey("registry.ModelVersion", on_delete=models.CASCADE, related_name="rollups")
    resolution = models.PositiveSmallIntegerField(help_text="Seconds per period: 10 or 60")
    start = models.DateTimeField()
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict)

    class Meta:
        ordering = ["start"]
        constraints = [models.UniqueConstraint(fields=["version", "resolution", "start"], name="one_rollup_per_period")]
        indexes = [models.Index(fields=["resolution", "start"])]

    def __str__(self) -> str:
        return f"v{self.version_id} {self.resolution}s at {self.start:%Y-%m-%d %H:%M:%S}"
