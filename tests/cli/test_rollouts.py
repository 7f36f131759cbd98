"""`paddock rollout` and `paddock tail` against the real web server, with the real worker and beat
where a rollout must move on its own: started, paused, resumed, rolled back, approved by an admin
and promoted; the live figures of real requests, a line a second."""

import json
import re
import time
from collections.abc import Callable
from typing import Any

import requests

from registry.models import Alias
from serving.models import Deployment, Rollout
from tests.cli.conftest import Paddock
from tests.conftest import wait_until


def test_a_canary_is_started_paused_resumed_and_rolled_back(engineer: Paddock, iris: Any) -> None:
    started = engineer("rollout", "start", "iris", "2", "--steps", "10,50", "--step-seconds", "5",
                       "--gate", "max_error_rate=0.05")
    assert started.returncode == 0, started.stderr
    rollout = Rollout.objects.get()
    assert (rollout.strategy, rollout.steps, rollout.step_seconds) == ("canary", [10, 50, 100], 5)
    assert rollout.gate_settings["max_error_rate"] == 0.05
    lines = started.stdout.splitlines()
    assert lines[:2] == [f"rollout {rollout.pk} of iris: canary of v2 over v1, running",
                         "  now       warming v2 on the workers, no traffic yet"]
    assert re.fullmatch(r"    \S+ \S+  start +canary of v2 over v1 \(engineer\)", lines[4]), lines
    status = engineer("rollout", "status", "iris", "--json")
    assert (status.returncode, json.loads(status.stdout)["state"]) == (0, "running")

    paused = engineer("rollout", "pause", "iris", "--reason", "lunch")
    assert paused.returncode == 0 and paused.stdout.startswith(
        f"rollout {rollout.pk} of iris: canary of v2 over v1, paused\n")
    again = engineer("rollout", "pause", "iris")
    assert (again.returncode, again.stderr) == (1, f"error: rollout {rollout.pk} is paused, not running\n")
    resumed = engineer("--json", "rollout", "resume", "iris", str(rollout.pk))
    assert (resumed.returncode, json.loads(resumed.stdout)["state"]) == (0, "running")

    rolled_back = engineer("rollout", "rollback", "iris", "--reason", "not today")
    assert rolled_back.returncode == 0, rolled_back.stderr
    first, now = rolled_back.stdout.splitlines()[:2]
    assert first == f"rollout {rollout.pk} of iris: canary of v2 over v1, rolled_back"
    assert re.fullmatch(r"  now       ended [\d-]+ [\d:]+: rolled back by engineer: not today", now), now
    assert Deployment.objects.get(model=iris).routes == []
    none_live = engineer("rollout", "promote", "iris")
    assert (none_live.returncode, none_live.stderr) == (
        1, f"error: model 'iris' has no live rollout (the newest, {rollout.pk}, is rolled_back)\n")
    ended = engineer("rollout", "promote", "iris", str(rollout.pk), "--json")
    assert (ended.returncode, json.loads(ended.stdout)) == (
        1, {"error": f"rollout {rollout.pk} has ended (rolled_back)", "status": 409})
    listed = engineer("rollout", "list", "iris")
    assert listed.stdout.splitlines()[0].split() == ["ID", "STRATEGY", "VERSIONS", "STATE", "STARTED", "REASON"]
    assert listed.stdout.splitlines()[1].split()[:5] == [str(rollout.pk), "canary", "v1", "->", "v2"]


def test_rollout_refusals_print_the_servers_reason(engineer: Paddock, iris: Any,
                                                  token_of: Callable[..., str]) -> None:
    same = engineer("rollout", "start", "iris", "1")
    assert (same.returncode, same.stderr) == (1, "error: version 1 already serves model 'iris'\n")
    steps = engineer("rollout", "start", "iris", "2", "--steps", "50,10")
    assert (steps.returncode, steps.stderr) == (1, "error: canary steps must increase, e.g. [10, 50, 100]\n")
    strategy = engineer("rollout", "start", "iris", "2", "--strategy", "yolo")
    assert (strategy.returncode, strategy.stderr) == (1, 'error: strategy: "yolo" is not a valid choice.\n')
    not_numbers = engineer("rollout", "start", "iris", "2", "--steps", "ten")
    assert not_numbers.returncode == 2
    assert "'ten' is not a comma-separated list of percentages, e.g. 10,50,100" in not_numbers.stderr
    viewer = engineer.with_token(token_of("viewer", "read", "manage"))
    refused = viewer("rollout", "start", "iris", "2")
    assert (refused.returncode, refused.stderr) == (
        1, "error: the engineer role in team 'ml' is required to change this model\n")
    missing = engineer("rollout", "status", "iris", "99")
    assert (missing.returncode, missing.stderr) == (1, "error: model 'iris' has no rollout 99\n")
    assert not Rollout.objects.exists()


def test_a_rollout_waiting_for_approval_is_approved_by_an_admin_and_promoted(
        engineer: Paddock, iris: Any, beat: Any, token_of: Callable[..., str]) -> None:
    started = engineer("--json", "rollout", "start", "iris", "2", "--strategy", "blue_green", "--require-approval")
    assert started.returncode == 0, started.stderr
    rollout_id = json.loads(started.stdout)["id"]

    def awaiting() -> dict[str, Any] | None:
        # The beat sees the worker hold v2, then stops before the switch for an admin.
        status = json.loads(engineer("rollout", "status", "iris", "--json").stdout)
        return status if status["state"] == "awaiting_approval" else None

    wait_until(awaiting, timeout=90, interval=0.5)
    status = engineer("rollout", "status", "iris")
    assert status.stdout.splitlines()[1] == (
        "  now       waiting for an admin to approve the final step (paddock rollout approve)")
    not_admin = engineer("rollout", "approve", "iris")
    assert (not_admin.returncode, not_admin.stderr) == (1, "error: only an admin can approve a rollout's final step\n")
    too_soon = engineer("rollout", "promote", "iris")
    assert (too_soon.returncode, too_soon.stderr) == (
        1, "error: this rollout needs an admin's approval before the candidate takes all traffic\n")

    admin = engineer.with_token(token_of("admin"))
    approved = admin("rollout", "approve", "iris", "--json")
    assert approved.returncode == 0, approved.stderr
    body = json.loads(approved.stdout)
    assert (body["id"], body["state"], body["approved_by"]) == (rollout_id, "running", "admin")
    assert Deployment.objects.get(model=iris).routes == [{"version": 2, "weight": 100}]
    promoted = engineer("rollout", "promote", "iris", "--reason", "looks good")
    assert promoted.returncode == 0, promoted.stderr
    assert promoted.stdout.splitlines()[0] == f"rollout {rollout_id} of iris: blue_green of v2 over v1, promoted"
    assert "promoted by engineer: looks good" in promoted.stdout
    assert Alias.objects.get(model=iris, name="champion").version.number == 2


def test_tail_prints_the_live_figures_once_a_second(engineer: Paddock, served: Any, web_server: str) -> None:
    body: dict[str, Any] = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 8], "data": [0.5] * 16}]}
    for _ in range(20):
        answer = requests.post(f"{web_server}/v2/models/iris/infer", json=body,
                               headers={"Authorization": f"Bearer {served.token}"}, timeout=30)
        assert answer.status_code == 200, answer.text

    def counted() -> list[dict[str, Any]] | None:
        done = engineer("tail", "iris", "--count", "2", "--window", "60", "--json")
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        return lines if lines[-1]["versions"][0]["summary"]["requests"] >= 20 else None

    # Web processes add their counts to Redis once a second.
    lines = wait_until(counted, timeout=15, interval=0.5)
    assert len(lines) == 2 and lines[0]["model"] == "iris" and lines[0]["active"] == 1
    assert lines[1]["window"][1] - lines[0]["window"][1] in (0, 1, 2)  # a second apart

    began = time.monotonic()
    done = engineer("tail", "iris", "--count", "2", "--window", "60")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - began >= 1.0
    text = done.stdout.splitlines()
    assert len(text) == 2
    for line in text:
        assert re.fullmatch(r"\d\d:\d\d:\d\d  iris  v1 100%: [\d.]+ req/s, 0\.0% errors, p50 [\d.]+ ms, "
                            r"p99 [\d.]+ ms, queue \d+", line), line
    missing = engineer("tail", "nope", "--count", "1")
    assert (missing.returncode, missing.stdout, missing.stderr) == (1, "", "error: model 'nope' not found\n")
