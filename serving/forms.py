"""The console's rollout form (templates/serving/_rollout_form.html): the versions it offers and
its gate fields, each with a label and a line of help. serving.rollouts checks what is sent."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from registry.choices import VersionStatus
from registry.models import ModelVersion
from serving.models import GATE_DEFAULTS, RolloutStrategy


@dataclass(frozen=True)
class GateField:
    """One gate of the form: the input's name (a key of GATE_DEFAULTS), its label and help."""

    name: str
    label: str
    help: str

    @property
    def default(self) -> Any:
        return GATE_DEFAULTS[self.name]


GATE_FIELDS = (
    GateField("max_error_rate", "Max error rate",
              "The candidate's largest share of failed (5xx) answers, from 0 to 1."),
    GateField("max_p99_ratio", "Max p99 ratio",
              "The candidate's p99 latency at most this many times the stable version's, same window."),
    GateField("p99_tolerance_ms", "P99 tolerance (ms)",
              "Milliseconds allowed on top of that ratio: a fast model's p99 jitters by more than half."),
    GateField("max_compute_ratio", "Max compute ratio",
              "The candidate's median compute time per row at most this many times the stable version's."),
    GateField("confidence", "Confidence",
              "How sure the figures must be before a gate fails (at least 0.5, below 1)."),
    GateField("min_shadow_agreement", "Min shadow agreement",
              "Shadow only: the least share of mirrored rows whose argmax agrees with the stable version's."),
    GateField("min_requests", "Min requests",
              "Requests the candidate must answer within the window before any gate is judged."),
    GateField("window_seconds", "Window (s)",
              "The gates judge the figures of this many most recent seconds."),
)


def rollout_form_context(versions: Iterable[ModelVersion], serving: int | None) -> dict[str, Any]:
    """The form's choices. The candidates are the model's ready versions, newest first, except the
    one that serves now (`serving`, the route's active version): a rollout to it is refused."""
    candidates = sorted((v for v in versions if v.status == VersionStatus.READY and v.number != serving),
                        key=lambda v: -v.number)
    return {"strategies": RolloutStrategy.choices, "gate_fields": GATE_FIELDS, "candidates": candidates}
