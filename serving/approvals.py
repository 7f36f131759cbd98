"""The approval inbox's side of rollouts: every rollout waiting for an admin, across teams, and
the admin's decision on one. Approving is serving.rollouts' `approve`; rejecting is its
`rollback`. Either takes a reason, which reaches the rollout's timeline and its audit event."""

from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery

from console.audit import Actor
from console.errors import Conflict, Forbidden, InvalidInput
from serving.models import Rollout, RolloutEvent, RolloutState
from serving.rollouts import control

DECISIONS = ("approve", "reject")
MAX_REASON = 500  # as the API's rollout actions (serving.api.serializers.RolloutActionSerializer)


def awaiting_approval() -> QuerySet[Rollout]:
    """The rollouts in `awaiting_approval`, each with its model, team and versions, and
    `waiting_since` (when it began to wait), the longest waiting first."""
    since = RolloutEvent.objects.filter(rollout=OuterRef("pk"), kind="awaiting_approval").order_by("-at")
    return (Rollout.objects.filter(state=RolloutState.AWAITING_APPROVAL)
            .select_related("model__team", "stable_version", "candidate_version", "created_by")
            .annotate(waiting_since=Subquery(since.values("at")[:1]))
            .order_by("waiting_since", "pk"))


def decide_rollout(*, actor: Actor, rollout: Rollout, decision: str, reason: str) -> Rollout:
    """An admin approves the rollout's final step (or a shadow's promotion), or rejects it,
    which rolls it back: "rolled back by <admin>: rejected: <reason>". Only while it waits: one
    another admin decided meanwhile, or that a person rolled back, is a Conflict."""
    reason = reason.strip()
    if decision not in DECISIONS:
        raise InvalidInput(f"unknown decision {decision!r}: approve or reject")
    if not reason:
        raise InvalidInput(f"a reason is required to {decision} a rollout")
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"the reason is {len(reason)} characters; at most {MAX_REASON}")
    if actor.person is None or not actor.person.is_superuser:
        raise Forbidden("only an admin can approve or reject a rollout awaiting approval")
    with transaction.atomic():
        current = Rollout.objects.select_for_update().select_related("model").get(pk=rollout.pk)
        if current.state != RolloutState.AWAITING_APPROVAL:
            raise Conflict(f"rollout {current.pk} of model '{current.model.name}' is {current.state}, "
                           "no longer awaiting approval")
        if decision == "approve":
            return control(actor=actor, rollout=current, action="approve", reason=reason)
        return control(actor=actor, rollout=current, action="rollback", reason=f"rejected: {reason}")
