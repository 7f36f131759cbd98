"""Commands that move and watch a model's traffic: `rollout start|list|status|pause|resume|approve|
promote|rollback` (docs/rollouts.md) and `tail`, the live figures once a second."""

import json
import time
from typing import Any

import click

from paddock_cli import render
from paddock_cli.base import Output, connect, json_option
from paddock_cli.client import ApiError, Client

# What a person may do to a live rollout (serving/api/views.py RolloutActionView), and what each does.
ACTIONS = {
    "pause": "Hold the rollout where it is: traffic stays as it is and nothing is judged.",
    "resume": "Resume a paused rollout; its step's hold starts again.",
    "approve": "Approve the final step of a rollout that waits for it (admins).",
    "promote": "Give the candidate all traffic and the champion alias now.",
    "rollback": "Send all traffic back to the stable version now.",
}


@click.group()
def rollout() -> None:
    """Roll a version out step by step, watch and steer it (docs/rollouts.md)."""


def _steps(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(step) for step in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a comma-separated list of percentages, e.g. 10,50,100") from None


def _gates(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> dict[str, float]:
    gates = {}
    for item in value:
        name, _, number = item.partition("=")
        try:
            gates[name.strip()] = float(number)
        except ValueError:
            raise click.BadParameter(f"'{item}' is not NAME=NUMBER, e.g. max_error_rate=0.02") from None
    return gates


@rollout.command("start")
@click.argument("model")
@click.argument("candidate", type=click.IntRange(min=1))
@click.option("--strategy", default="canary", show_default=True,
              help="canary, blue_green, shadow, ab or direct (promote now).")
@click.option("--steps", callback=_steps,
              help="Percentages: canary weights (10,50,100), ab the candidate's share, shadow the share mirrored.")
@click.option("--step-seconds", type=click.IntRange(min=0), help="How long each step is held (server default: 60).")
@click.option("--gate", "gates", multiple=True, callback=_gates, metavar="NAME=NUMBER",
              help="A gate other than its default, e.g. max_error_rate=0.02; repeat for each.")
@click.option("--require-approval", is_flag=True, help="Wait for an admin before the final step.")
@click.option("--no-auto-promote", is_flag=True, help="shadow: a person promotes once its gates pass.")
@click.option("--sticky-by", type=click.Choice(["header", "parameter"]),
              help="ab: pin each caller to one version by a header or a v2 request parameter...")
@click.option("--sticky-key", help="...of this name.")
@json_option
@click.pass_obj
def rollout_start(output: Output, model: str, candidate: int, strategy: str, steps: list[float] | None,
                  step_seconds: int | None, gates: dict[str, float], require_approval: bool, no_auto_promote: bool,
                  sticky_by: str | None, sticky_key: str | None) -> None:
    """Start rolling CANDIDATE (a ready version of MODEL) out over the version that serves now."""
    body: dict[str, Any] = {"candidate": candidate, "strategy": strategy, "require_approval": require_approval,
                            "auto_promote": not no_auto_promote}
    for name, value in (("steps", steps), ("step_seconds", step_seconds), ("gates", gates or None),
                        ("sticky_by", sticky_by), ("sticky_key", sticky_key)):
        if value is not None:
            body[name] = value
    started = connect().start_rollout(model, body)
    output.result(started, lambda: render.rollout(started))


@rollout.command("list")
@click.argument("model")
@json_option
@click.pass_obj
def rollout_list(output: Output, model: str) -> None:
    """MODEL's latest 50 rollouts, newest first."""
    found = connect().rollouts(model)
    output.result(found, lambda: render.rollouts(found))


def _chosen(client: Client, model: str, rollout_id: int | None, *, live_only: bool) -> dict[str, Any]:
    """The rollout named, else the model's live one (else, unless `live_only`, its newest)."""
    if rollout_id is not None:
        return client.rollout(model, rollout_id)
    found = client.rollouts(model)
    live = [r for r in found if r["state"] in render.LIVE_STATES]
    if live:
        return live[0]
    if found and not live_only:
        return found[0]
    raise ApiError(f"model '{model}' has no live rollout" + (f" (the newest, {found[0]['id']}, is "
                                                             f"{found[0]['state']})" if found else ""))


@rollout.command("status")
@click.argument("model")
@click.argument("rollout_id", type=int, required=False)
@json_option
@click.pass_obj
def rollout_status(output: Output, model: str, rollout_id: int | None) -> None:
    """A rollout of MODEL (by default the live one, else the newest): where it stands, its latest
    gate figures and its timeline."""
    found = _chosen(connect(), model, rollout_id, live_only=False)
    output.result(found, lambda: render.rollout(found))


def _action_command(action: str, help_text: str) -> click.Command:
    @json_option
    @click.argument("model")
    @click.argument("rollout_id", type=int, required=False)
    @click.option("--reason", default="", help="Why: kept in the timeline and the audit log.")
    @click.pass_obj
    def act(output: Output, model: str, rollout_id: int | None, reason: str) -> None:
        client = connect()
        target = _chosen(client, model, rollout_id, live_only=True)
        done = client.control_rollout(model, target["id"], action, reason)
        output.result(done, lambda: render.rollout(done))

    return click.command(action, help=f"{help_text} The live rollout of MODEL unless ROLLOUT_ID names one.")(act)


for _action, _help in ACTIONS.items():
    rollout.add_command(_action_command(_action, _help))


@click.command()
@click.argument("model")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many lines (default: at Ctrl-C).")
@click.option("--interval", type=click.FloatRange(min=0.2), default=1.0, show_default=True,
              help="Seconds between lines.")
@click.option("--window", type=click.IntRange(1, 3600), default=10, show_default=True,
              help="Seconds of traffic each line sums up.")
@json_option
@click.pass_obj
def tail(output: Output, model: str, count: int | None, interval: float, window: int) -> None:
    """MODEL's live figures, a line per interval: per version its share, requests/s, errors,
    p50 and p99 latency, queue depth. With --json, one JSON object per line."""
    client = connect()
    printed = 0
    try:
        while count is None or printed < count:
            started = time.monotonic()
            figures = client.metrics(model, window)
            click.echo(json.dumps(figures) if output.json else render.figures(figures))
            printed += 1
            if count is None or printed < count:
                time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a person stops it: not an error
