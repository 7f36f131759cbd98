"""What each event tells a receiver, built from the rows of the change (docs/webhooks.md shows
every payload). The registry's and serving's verbs call these inside their own transaction, beside
their audit event; each costs one query when the team has no webhook."""

from typing import TYPE_CHECKING, Any

from webhooks.services import emit

if TYPE_CHECKING:
    from registry.models import Alias, ModelVersion
    from serving.models import Deployment, Rollout

# A rollout's timeline kinds (serving/rollouts.py) that are webhook events, and their names.
ROLLOUT_EVENTS = {"step": "rollout.step", "awaiting_approval": "rollout.awaiting_approval",
                  "promote": "rollout.promoted", "rollback": "rollout.rolled_back"}


def version_finished(version: "ModelVersion") -> None:
    """version.ready or version.failed: a validation ended (the reason says why it failed)."""
    event = "version.ready" if version.status == "ready" else "version.failed"
    emit(event=event, team_id=version.model.team_id, data={
        "model": version.model.name, "version": version.number, "status": version.status,
        "reason": version.status_reason, "format": version.format, "sha256": version.sha256,
        "provider": (version.validation_report or {}).get("provider")})


def alias_moved(alias: "Alias", before: dict[str, Any] | None) -> None:
    """alias.moved: an alias now names another version (`before` as the audit event has it: None
    for a new alias); setting it to the version it names already tells nothing."""
    previous = before.get("version") if before else None
    if previous == alias.version.number:
        return
    emit(event="alias.moved", team_id=alias.model.team_id, data={
        "model": alias.model.name, "alias": alias.name, "version": alias.version.number,
        "previous_version": previous})


def deployment_changed(deployment: "Deployment", before: dict[str, Any] | None, action: str) -> None:
    """deployment.changed: a person configured the deployment (`configure`), a rollout steered its
    traffic (`traffic`) or it was removed (`delete`: `after` is null); no change, no event."""
    after = None if action == "delete" else deployment.snapshot()
    if after == before:
        return
    emit(event="deployment.changed", team_id=deployment.model.team_id, data={
        "model": deployment.model.name, "action": action, "before": before, "after": after})


def rollout_changed(rollout: "Rollout", kind: str, message: str, figures: dict[str, Any]) -> None:
    """rollout.step, .awaiting_approval, .promoted, .rolled_back: the timeline's entry with its
    figures, and `last_check`, the gates' latest figures (what decided it)."""
    event = ROLLOUT_EVENTS.get(kind)
    if event is None:
        return
    emit(event=event, team_id=rollout.model.team_id, data={
        "model": rollout.model.name, "rollout": rollout.pk, "strategy": rollout.strategy, "state": rollout.state,
        "stable": rollout.stable_version.number, "candidate": rollout.candidate_version.number,
        "step": rollout.step_index, "steps": list(rollout.steps), "message": message, "figures": figures,
        "last_check": rollout.last_check})
