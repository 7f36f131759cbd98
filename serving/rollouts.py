"""Rollouts: moving a model's traffic from its stable version to a candidate, judged by live
figures (serving.livestats) at every step.

A rollout never changes the deployment's `active_version` until it is promoted: while it runs
it only sets the deployment's traffic fields (routes, shadow, standby, A/B key), so a rollback
is clearing them. Promotion makes the candidate the active version and moves `champion`.

Strategies and their steps:
- direct: promote at once.
- canary: `steps` are the candidate's weights (e.g. [10, 50, 100]); each is held at least
  `step_seconds` and must pass its gates before the next; passing at 100 promotes.
- blue_green: all traffic at once; passing its gates for `step_seconds` promotes.
- canary, ab and blue_green first hold the candidate warm (standby, no traffic) until
  `min_workers` live workers hold it (step -1), so that no caller waits for a load.
- shadow: `steps[0]` percent of requests are mirrored to the candidate after their callers are
  answered; passing (agreement, shadow errors) for `step_seconds` promotes if `auto_promote`.
- ab: `steps[0]` is the candidate's share, callers pinned by `sticky_by`/`sticky_key`; it runs
  until a person promotes or rolls back (a failing gate still rolls back).

Gates (Rollout.gate_settings, judged by `judge` with serving.gates' statistics), over the last
`window_seconds` of the current step, each failing only when the figures show it at the
rollout's `confidence`: the candidate's 5xx rate above max_error_rate (and above the stable
version's), its compute per row above max_compute_ratio × the stable version's, its p99 above
max_p99_ratio × the stable version's p99 + p99_tolerance_ms (same window only), shadow
agreement below min_shadow_agreement; nothing is judged before the candidate has min_requests
in the window. A failing gate rolls back at once; the beat task `evaluate_rollouts` checks
every PADDOCK_ROLLOUT_TICK_SECONDS. Every event is written to the rollout's timeline and to the
audit log with the figures that decided it."""

import time
from typing import Any

from django.db import transaction
from django.utils import timezone

from console.audit import Actor, record_event
from console.errors import Conflict, Forbidden, InvalidInput, NotFound
from registry.choices import CHAMPION
from registry.models import RegisteredModel
from registry.services import set_alias
from serving import gates as gates_stats
from serving import livestats
from serving.live import version_holders
from serving.models import GATE_DEFAULTS, Deployment, Rollout, RolloutEvent, RolloutState, RolloutStrategy
from serving.services import lock_deployment, set_traffic
from serving.v2.routes import load_model_route
from webhooks import events as webhook_events

# The step before the first: the candidate is held warm by the workers, no traffic yet, so that
# its first requests do not wait for a load (and its first figures are not a cold start's).
WARMING = -1
DEFAULT_STEPS: dict[str, list[float]] = {
    RolloutStrategy.CANARY: [10, 50, 100], RolloutStrategy.AB: [50], RolloutStrategy.SHADOW: [100],
    RolloutStrategy.BLUE_GREEN: [100], RolloutStrategy.DIRECT: [100],
}
STICKY_KINDS = ("header", "parameter")
# A step's first seconds are not judged: web processes route by the old split until their route
# cache reloads (within a second) and add their counts to Redis once a second.
SETTLE_SECONDS = 2


# -- starting --------------------------------------------------------------------------------

def _clean_steps(strategy: str, steps: list[Any] | None) -> list[float]:
    steps = list(steps) if steps else list(DEFAULT_STEPS[strategy])
    if any(not isinstance(s, int | float) or isinstance(s, bool) or not 0 < s <= 100 for s in steps):
        raise InvalidInput("steps must be numbers above 0 and at most 100 (percent)")
    if strategy == RolloutStrategy.CANARY:
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise InvalidInput("canary steps must increase, e.g. [10, 50, 100]")
        if steps[-1] != 100:
            steps.append(100)
    elif strategy in (RolloutStrategy.AB, RolloutStrategy.SHADOW):
        if len(steps) != 1:
            raise InvalidInput(f"{strategy} takes one step: the candidate's share in percent")
        if strategy == RolloutStrategy.AB and steps[0] >= 100:
            raise InvalidInput("an A/B split keeps some traffic on the stable version: share below 100")
    else:
        steps = [100]
    return steps


def _clean_gates(gates: dict[str, Any] | None) -> dict[str, Any]:
    gates = dict(gates or {})
    unknown = sorted(set(gates) - set(GATE_DEFAULTS))
    if unknown:
        raise InvalidInput(f"unknown gate(s): {', '.join(unknown)}; known: {', '.join(GATE_DEFAULTS)}")
    for name, value in gates.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise InvalidInput(f"gate '{name}' must be a non-negative number")
    if "confidence" in gates and not 0.5 <= gates["confidence"] < 1:
        raise InvalidInput("gate 'confidence' must be at least 0.5 and below 1 (e.g. 0.999)")
    return gates


def start_rollout(*, actor: Actor, model: RegisteredModel, candidate: int, strategy: str,
                  steps: list[Any] | None = None, step_seconds: int = 60, gates: dict[str, Any] | None = None,
                  require_approval: bool = False, auto_promote: bool = True, sticky_by: str = "",
                  sticky_key: str = "") -> Rollout:
    if strategy not in RolloutStrategy.values:
        raise InvalidInput(f"unknown strategy {strategy!r}; one of {', '.join(RolloutStrategy.values)}")
    steps = _clean_steps(strategy, steps)
    gates = _clean_gates(gates)
    if sticky_by and sticky_by not in STICKY_KINDS:
        raise InvalidInput("sticky_by must be 'header' or 'parameter'")
    if bool(sticky_by) != bool(sticky_key):
        raise InvalidInput("sticky_by and sticky_key go together")
    with transaction.atomic():
        deployment = lock_deployment(actor=actor, model=model)
        live = model.rollouts.filter(state__in=RolloutState.live()).first()
        if live is not None:
            raise Conflict(f"model '{model.name}' already has a {live.state} {live.strategy} rollout "
                           f"(id {live.pk}): promote or roll it back first")
        version = model.versions.filter(number=candidate).first()
        if version is None:
            raise NotFound(f"model '{model.name}' has no version {candidate}")
        if not version.is_servable():
            raise InvalidInput(f"version {candidate} is {version.status}: only a ready version can be rolled out")
        route = load_model_route(model.name)
        stable_number = route.active if route else None
        if stable_number == candidate:
            raise InvalidInput(f"version {candidate} already serves model '{model.name}'")
        if stable_number is None and strategy != RolloutStrategy.DIRECT:
            raise InvalidInput(f"model '{model.name}' has no serving version to compare with: use 'direct'")
        stable = model.versions.get(number=stable_number) if stable_number is not None else version
        rollout = Rollout.objects.create(
            model=model, strategy=strategy, stable_version=stable, candidate_version=version, steps=steps,
            step_seconds=step_seconds, gates=gates, require_approval=require_approval, auto_promote=auto_promote,
            sticky_by=sticky_by, sticky_key=sticky_key,
            created_by=actor.person,
        )
        _event(actor, rollout, "start", f"{strategy} of v{candidate} over v{stable.number}", rollout.snapshot())
        if strategy == RolloutStrategy.DIRECT:
            _promote(actor, rollout, deployment, "direct promotion")
        elif strategy == RolloutStrategy.SHADOW:
            _enter_step(actor, rollout, deployment, 0)  # a cold shadow costs its callers nothing
        else:
            _enter_step(actor, rollout, deployment, WARMING)
    return rollout


# -- traffic per step ------------------------------------------------------------------------

def _split(rollout: Rollout, weight: float) -> list[dict[str, Any]]:
    return [{"version": rollout.stable_version.number, "weight": round(100 - weight, 3)},
            {"version": rollout.candidate_version.number, "weight": weight}]


def _enter_step(actor: Actor, rollout: Rollout, deployment: Deployment, index: int) -> None:
    """Apply step `index`; or, before the final step of a rollout that needs an admin's
    approval it does not have yet, wait for it."""
    final = rollout.strategy in (RolloutStrategy.CANARY, RolloutStrategy.BLUE_GREEN) and index == len(rollout.steps) - 1
    if final and rollout.require_approval and rollout.approved_by_id is None:
        rollout.state = RolloutState.AWAITING_APPROVAL
        rollout.save(update_fields=["state"])
        _event(actor, rollout, "awaiting_approval", "an admin must approve the final step", rollout.last_check)
        return
    rollout.step_index, rollout.step_started_at = index, timezone.now()
    rollout.save(update_fields=["step_index", "step_started_at"])
    candidate = rollout.candidate_version
    if index == WARMING:
        set_traffic(actor=actor, deployment=deployment, standby=candidate)
        message = f"warming v{candidate.number} before it takes traffic"
    elif rollout.strategy == RolloutStrategy.CANARY:
        set_traffic(actor=actor, deployment=deployment, routes=_split(rollout, rollout.steps[index]))
        message = f"v{candidate.number} takes {rollout.steps[index]:g}% of traffic"
    elif rollout.strategy == RolloutStrategy.AB:
        set_traffic(actor=actor, deployment=deployment, routes=_split(rollout, rollout.steps[0]),
                    sticky=(rollout.sticky_by, rollout.sticky_key))
        message = f"A/B: v{candidate.number} takes {rollout.steps[0]:g}%"
    elif rollout.strategy == RolloutStrategy.SHADOW:
        set_traffic(actor=actor, deployment=deployment, shadow=candidate, shadow_percent=rollout.steps[0])
        message = f"{rollout.steps[0]:g}% of requests mirrored to v{candidate.number}"
    else:  # blue_green
        set_traffic(actor=actor, deployment=deployment, routes=[{"version": candidate.number, "weight": 100}])
        message = f"v{candidate.number} takes all traffic"
    _event(actor, rollout, "step", message, {"step": index, "routes": deployment.routes,
                                             "shadow_percent": deployment.shadow_percent})


def _end(actor: Actor, rollout: Rollout, state: str, kind: str, reason: str, figures: dict[str, Any]) -> None:
    rollout.state, rollout.reason, rollout.ended_at = state, reason, timezone.now()
    rollout.save(update_fields=["state", "reason", "ended_at"])
    _event(actor, rollout, kind, reason, figures)


def _promote(actor: Actor, rollout: Rollout, deployment: Deployment, reason: str) -> None:
    set_traffic(actor=actor, deployment=deployment, active=rollout.candidate_version)
    set_alias(actor=actor, model=rollout.model, name=CHAMPION, version=rollout.candidate_version)
    _end(actor, rollout, RolloutState.PROMOTED, "promote", reason, rollout.last_check)


def _rollback(actor: Actor, rollout: Rollout, deployment: Deployment, reason: str,
              figures: dict[str, Any] | None = None) -> None:
    set_traffic(actor=actor, deployment=deployment)
    _end(actor, rollout, RolloutState.ROLLED_BACK, "rollback", reason, figures or rollout.last_check)


def _event(actor: Actor, rollout: Rollout, kind: str, message: str, figures: dict[str, Any]) -> None:
    RolloutEvent.objects.create(rollout=rollout, kind=kind, message=message, figures=figures, actor=actor.username)
    record_event(actor=actor, action=f"rollout.{kind}", obj=rollout,
                 after={"model": rollout.model.name, "candidate": rollout.candidate_version.number,
                        "stable": rollout.stable_version.number, "strategy": rollout.strategy,
                        "message": message, "figures": figures})
    webhook_events.rollout_changed(rollout, kind, message, figures)


# -- people's controls -----------------------------------------------------------------------

def _locked(rollout_id: int) -> tuple[Rollout, Deployment]:
    rollout = Rollout.objects.select_for_update().select_related(
        "model", "stable_version", "candidate_version").get(pk=rollout_id)
    deployment = Deployment.objects.select_for_update().get(model=rollout.model)
    return rollout, deployment


def control(*, actor: Actor, rollout: Rollout, action: str, reason: str = "") -> Rollout:
    """pause, resume, promote, rollback, approve: by a person, at any time while it is live."""
    with transaction.atomic():
        rollout, deployment = _locked(rollout.pk)
        if rollout.state not in RolloutState.live():
            raise Conflict(f"rollout {rollout.pk} has ended ({rollout.state})")
        by = f" by {actor.username}" + (f": {reason}" if reason else "")
        admin = actor.person is not None and actor.person.is_superuser
        if action == "pause":
            if rollout.state != RolloutState.RUNNING:
                raise Conflict(f"rollout {rollout.pk} is {rollout.state}, not running")
            rollout.state = RolloutState.PAUSED
            rollout.save(update_fields=["state"])
            _event(actor, rollout, "pause", f"paused{by}; traffic stays as it is", rollout.last_check)
        elif action == "resume":
            if rollout.state != RolloutState.PAUSED:
                raise Conflict(f"rollout {rollout.pk} is {rollout.state}, not paused")
            rollout.state, rollout.step_started_at = RolloutState.RUNNING, timezone.now()
            rollout.save(update_fields=["state", "step_started_at"])
            _event(actor, rollout, "resume", f"resumed{by}; the step's hold starts again", {})
        elif action == "approve":
            if not admin:
                raise Forbidden("only an admin can approve a rollout's final step")
            if rollout.state != RolloutState.AWAITING_APPROVAL:
                raise Conflict(f"rollout {rollout.pk} is {rollout.state}, not awaiting approval")
            rollout.approved_by, rollout.state = actor.person, RolloutState.RUNNING
            rollout.save(update_fields=["approved_by", "state"])
            _event(actor, rollout, "approve", f"final step approved{by}", {})
            if rollout.strategy == RolloutStrategy.SHADOW:
                _promote(actor, rollout, deployment, f"promoted on approval{by}")
            else:
                _enter_step(actor, rollout, deployment, len(rollout.steps) - 1)
        elif action == "promote":
            if rollout.require_approval and rollout.approved_by_id is None and not admin:
                raise Forbidden("this rollout needs an admin's approval before the candidate takes all traffic")
            _promote(actor, rollout, deployment, f"promoted{by}")
        elif action == "rollback":
            _rollback(actor, rollout, deployment, f"rolled back{by}")
        else:
            raise InvalidInput(f"unknown action {action!r}: pause, resume, approve, promote or rollback")
    return rollout


# -- gates (beat) ----------------------------------------------------------------------------

def _brief(summary: dict[str, Any], arm: gates_stats.Arm) -> dict[str, Any]:
    return {"requests": summary["requests"], "errors": summary["errors"], "error_rate": summary["error_rate"],
            "p50_ms": summary["latency_ms"]["total"]["p50"], "p99_ms": summary["latency_ms"]["total"]["p99"],
            "compute_per_row_us": {f"p{int(q * 100)}": _micro(arm.per_row.quantile(q)) for q in (0.5, 0.9)},
            "shadow": summary["shadow"]}


def _micro(ms: float | None) -> float | None:
    return round(ms * 1000, 2) if ms is not None else None


def _arm(counts: Any) -> gates_stats.Arm:
    codes = {field[1:]: n for field, n in counts.items() if field[0] == "c"}
    return gates_stats.Arm(
        requests=sum(codes.values()), errors=sum(n for code, n in codes.items() if code.startswith("5")),
        total=gates_stats.Histogram.of(counts, "t", livestats.LATENCY_EDGES_MS),
        per_row=gates_stats.Histogram.of(counts, "r", livestats.ROW_EDGES_MS))


def judge(rollout: Rollout, now: float | None = None, conn: Any = None) -> dict[str, Any]:
    """The gates' verdict on the current step: figures, failures, and whether it may advance.

    1. Read both versions' gated figures (livestats.gated): the candidate's over the step's last
       `window_seconds` (less its first SETTLE_SECONDS); the stable version's over the same
       seconds while both take traffic, else (a canary's 100% step, blue/green) over the window
       before the step began.
    2. Nothing is judged before the candidate has `min_requests`; a comparison with the stable
       version also needs it to have `min_requests`.
    3. The gates of serving.gates, each failing only at the rollout's `confidence`: errors;
       while both versions share the window, p99 and compute per row (their versions' own cost,
       not the queue they share). Latency of two different moments is never compared: on a
       busy machine it differs by the moment (up to 2× here), not by the version."""
    gates = rollout.gate_settings
    conn = conn or livestats.client()
    end = int(now if now is not None else time.time())
    step_start = int(rollout.step_started_at.timestamp())
    start = min(end, max(step_start + SETTLE_SECONDS, end - int(gates["window_seconds"])))
    seconds = max(1, end - start)
    # Gates judge the requests the split routed, never ones a caller pinned to a version or cut
    # short with its own deadline (livestats.gated): a predict token cannot steer a rollout.
    candidate_counts = livestats.gated(livestats.read_window(conn, rollout.candidate_version_id, start, end))
    shared = rollout.strategy == RolloutStrategy.AB or (
        rollout.strategy == RolloutStrategy.CANARY and rollout.steps[rollout.step_index] < 100)
    stable_start, stable_end = start, end
    if rollout.strategy in (RolloutStrategy.BLUE_GREEN, RolloutStrategy.CANARY) and not shared:
        # The stable version has no traffic in this step: compare with its last window before.
        stable_start, stable_end = step_start - int(gates["window_seconds"]), step_start
    stable_counts = livestats.gated(livestats.read_window(conn, rollout.stable_version_id, stable_start, stable_end))
    candidate = livestats.summarize(candidate_counts, seconds)
    stable = livestats.summarize(stable_counts, max(1, stable_end - stable_start))
    candidate_arm, stable_arm = _arm(candidate_counts), _arm(stable_counts)
    alpha = 1 - gates["confidence"]
    failures: list[str] = []
    checks: dict[str, Any] = {}
    shadow = rollout.strategy == RolloutStrategy.SHADOW
    observed = candidate["shadow"]["requests"] if shadow else candidate["requests"]
    judged = observed >= gates["min_requests"]
    compared = stable["requests"] >= gates["min_requests"]
    if judged and shadow:
        mirrored = gates_stats.Arm(requests=observed, errors=candidate["shadow"]["errors"],
                                   total=candidate_arm.total, per_row=candidate_arm.per_row)
        failure, checks["errors"] = gates_stats.check_errors(mirrored, None, gates, alpha)
        if failure:
            failures.append("shadow " + failure.replace(" requests", " mirrored requests"))
        agreement = candidate["shadow"]["agreement"]
        if agreement is not None and agreement < gates["min_shadow_agreement"]:
            failures.append(f"shadow agreement {agreement:.3f} < {gates['min_shadow_agreement']}")
    elif judged:
        failure, checks["errors"] = gates_stats.check_errors(candidate_arm, stable_arm if compared else None,
                                                             gates, alpha)
        failures += [failure] if failure else []
        if compared and shared:
            failure, checks["p99"] = gates_stats.check_p99(candidate_arm, stable_arm, gates, alpha)
            failures += [failure] if failure else []
            overdue = rollout.strategy == RolloutStrategy.CANARY and (
                end - step_start >= gates_stats.UNDECIDED_HOLDS * rollout.step_seconds)
            failure, checks["compute_per_row"] = gates_stats.check_compute(candidate_arm, stable_arm, gates, alpha,
                                                                           overdue)
            failures += [failure] if failure else []
    held = end - step_start
    decided = checks.get("compute_per_row", {}).get("within", True)  # shown within its ratio, where compared
    return {
        "at": end, "window": [start, end], "stable_window": [stable_start, stable_end], "step": rollout.step_index,
        "held_seconds": held, "candidate": _brief(candidate, candidate_arm), "stable": _brief(stable, stable_arm),
        "gates": gates, "judged": judged, "checks": checks,
        "failures": failures, "passed": judged and not failures and decided and held >= rollout.step_seconds,
    }


def tick(rollout_id: int, now: float | None = None) -> str:
    """One gate check of one running rollout (beat calls this for each); returns what happened."""
    actor = Actor.system("rollouts")
    conn = livestats.client()
    with transaction.atomic():
        rollout = Rollout.objects.select_for_update(skip_locked=True).select_related(
            "model", "stable_version", "candidate_version").filter(pk=rollout_id, state=RolloutState.RUNNING).first()
        if rollout is None:
            return "not running"
        deployment = Deployment.objects.select_for_update().get(model=rollout.model)
        if rollout.step_index == WARMING:
            warm, live = version_holders(rollout.candidate_version, conn)
            needed = max(1, min(deployment.min_workers, live))
            rollout.last_check = {"at": int(time.time()), "warm_workers": warm, "needed": needed}
            rollout.save(update_fields=["last_check"])
            if warm < needed:
                return "warming"
            _enter_step(actor, rollout, deployment, 0)
            return "warm"
        verdict = judge(rollout, now, conn)
        rollout.last_check = verdict
        rollout.save(update_fields=["last_check"])
        if verdict["failures"]:
            _rollback(actor, rollout, deployment, "gate failed: " + "; ".join(verdict["failures"]), verdict)
            return "rolled back"
        if not verdict["passed"] or rollout.strategy == RolloutStrategy.AB:
            return "holding"
        _event(actor, rollout, "gate", f"step {rollout.step_index} passed its gates", verdict)
        last = rollout.step_index >= len(rollout.steps) - 1
        if rollout.strategy == RolloutStrategy.SHADOW:
            if not rollout.auto_promote:
                return "holding"
            last = True
        if not last:
            _enter_step(actor, rollout, deployment, rollout.step_index + 1)
            return "advanced"
        if rollout.require_approval and rollout.approved_by_id is None and rollout.strategy == RolloutStrategy.SHADOW:
            rollout.state = RolloutState.AWAITING_APPROVAL
            rollout.save(update_fields=["state"])
            _event(actor, rollout, "awaiting_approval", "an admin must approve the promotion", verdict)
            return "awaiting approval"
        _promote(actor, rollout, deployment, "every step passed its gates")
        return "promoted"


def running_ids() -> list[int]:
    return list(Rollout.objects.filter(state=RolloutState.RUNNING).values_list("pk", flat=True))
