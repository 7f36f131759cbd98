"""Webhooks on `make run` itself, with its defaults (one solo worker, SQLite, its embedded Redis):
a team whose receivers hang past the timeout ties up one sender thread of the worker, never its
Celery pool, so another team's upload is validated and that team's webhook delivered while the
slow attempt still hangs; and a worker SIGKILLed mid-attempt leaves nothing undelivered: the worker
runstack starts in its place makes the attempt again once its lease lapses, under the same key.
Ordering is read from state (what each receiver holds, the delivery log), never from durations."""

import json
import os
import signal
from pathlib import Path
from typing import Any

from registry.demo import build_demo_onnx
from tests import models as built
from tests.conftest import wait_until
from tests.reliability.stack import GUARD_SECONDS, WORKER, Stack, runstack
from tests.webhooks.receiver import running

# Longer than the rest of the scene takes (an upload, its validation, a delivery: seconds), so that
# the slow attempt is seen hanging throughout; the receiver hangs longer still.
TIMEOUT = "30"


def add_webhook(stack: Stack, team: str, url: str, events: list[str]) -> int:
    made = stack.api("POST", f"/api/v1/teams/{team}/webhooks/", json.dumps({"url": url, "events": events}).encode())
    return int(made["id"])


def deliveries(stack: Stack, team: str, webhook: int) -> list[dict[str, Any]]:
    """The webhook's delivery log, oldest first."""
    found: list[dict[str, Any]] = stack.api("GET", f"/api/v1/teams/{team}/webhooks/{webhook}/deliveries/")["results"]
    return found[::-1]


def in_flight(delivery: dict[str, Any]) -> bool:
    """Claimed for its first attempt, and no outcome recorded yet."""
    return (delivery["state"], delivery["attempts"], delivery["last_status_code"], delivery["duration_ms"],
            delivery["last_error"]) == ("pending", 1, None, None, "")


def test_a_team_whose_receivers_hang_does_not_hold_up_another_team_s_validation_or_webhook(tmp_path: Path) -> None:
    with running([200], holds=1) as slow, running([200]) as fast, \
            runstack(tmp_path, "predict", "read", "manage", PADDOCK_WEBHOOK_TIMEOUT_SECONDS=TIMEOUT,
                     PADDOCK_WEBHOOK_ALLOW_PRIVATE="1") as stack:
        made = stack.manage("shell", "-c", "from console.audit import Actor; from console.services import "
                                           "ensure_team; ensure_team(actor=Actor.system('tests'), name='slow')")
        assert made.returncode == 0, made.stderr
        # Team slow: two webhooks on a receiver whose first request hangs past the timeout (2 senders:
        # the team's share is one of them). Team demo: one webhook on a receiver that answers at once.
        hooks = [add_webhook(stack, "slow", f"{slow.url}?hook={name}", ["version.ready", "alias.moved"])
                 for name in ("a", "b")]
        fast_hook = add_webhook(stack, "demo", fast.url, ["version.ready"])
        stack.api("POST", "/api/v1/models/", json.dumps({"name": "slowpoke", "team": "slow"}).encode())
        stack.upload("slowpoke", built.mlp_onnx(seed=1))  # ready: version.ready and alias.moved to both hooks
        wait_until(lambda: slow.holding == 1, timeout=GUARD_SECONDS, interval=0.1)
        [hanging] = [d for hook in hooks for d in deliveries(stack, "slow", hook) if d["attempts"]]
        assert in_flight(hanging)

        number = stack.upload("demo-mlp", build_demo_onnx(seed=8))  # validated on the worker's pool meanwhile
        hanging_now = [d for d in deliveries(stack, "slow", hooks[0]) + deliveries(stack, "slow", hooks[1])
                       if d["id"] == hanging["id"]]
        assert in_flight(hanging_now[0]) and slow.holding == 1  # the validation ended while it hung

        wait_until(lambda: fast.received, timeout=GUARD_SECONDS, interval=0.1)
        log = [d for hook in hooks for d in deliveries(stack, "slow", hook)]
        assert slow.holding == 1 and len(slow.received) == 1  # still hanging; no other slow-team attempt began
        assert in_flight(next(d for d in log if d["id"] == hanging["id"]))
        assert sorted(d["attempts"] for d in log) == [0, 0, 0, 1]  # the other three wait: same target, or same team
        [ready] = [json.loads(r.body) for r in fast.received]
        assert (ready["event"], ready["team"], ready["data"]["model"], ready["data"]["version"]) == (
            "version.ready", "demo", "demo-mlp", number)
        [delivered] = deliveries(stack, "demo", fast_hook)
        assert (delivered["state"], delivered["attempts"]) == ("succeeded", 1)

        # The slow attempt is cut at the timeout and tried again under the same key; then the rest go.
        def all_ended() -> list[dict[str, Any]] | None:
            ended = [d for hook in hooks for d in deliveries(stack, "slow", hook)]
            return ended if all(d["state"] != "pending" for d in ended) else None

        ended = wait_until(all_ended, timeout=GUARD_SECONDS * 2, interval=0.5)
        slow.release.set()
        assert {d["state"] for d in ended} == {"succeeded"}
        assert sorted(d["attempts"] for d in ended) == [1, 1, 1, 2]
        assert f"attempt 1: no answer (no answer within {TIMEOUT} s)" in stack.log.read_text()
        again = [r for r in slow.received if r.headers["Paddock-Delivery"] == hanging["key"]]
        assert [r.headers["Paddock-Attempt"] for r in again] == ["1", "2"]
        assert slow.most_held == 1 and len(slow.received) == 5


def test_an_attempt_whose_worker_is_killed_is_made_again_by_the_worker_started_in_its_place(tmp_path: Path) -> None:
    """The default timeout (5 s): the attempt's lease lapses 35 s after it was claimed."""
    with running([200], holds=1) as receiver, \
            runstack(tmp_path, "predict", "read", "manage", PADDOCK_WEBHOOK_ALLOW_PRIVATE="1") as stack:
        stack.serving()
        hook = add_webhook(stack, "demo", receiver.url, ["alias.moved"])
        stack.api("PUT", "/api/v1/models/demo-mlp/aliases/staging/", json.dumps({"version": 1}).encode())
        worker = stack.child(WORKER)
        wait_until(lambda: receiver.holding == 1, timeout=GUARD_SECONDS, interval=0.1)
        os.kill(worker, signal.SIGKILL)  # mid-attempt: nothing is recorded
        [lost] = deliveries(stack, "demo", hook)
        assert in_flight(lost)

        def ended() -> dict[str, Any] | None:
            [now] = deliveries(stack, "demo", hook)
            return now if now["state"] != "pending" else None

        done = wait_until(ended, timeout=GUARD_SECONDS, interval=0.5)
        receiver.release.set()
        assert (done["state"], done["attempts"], done["last_status_code"]) == ("succeeded", 2, 200)
        assert stack.child(WORKER) != worker  # runstack started a new one, which made attempt 2
        assert [r.headers["Paddock-Attempt"] for r in receiver.received] == ["1", "2"]
        assert {r.headers["Paddock-Delivery"] for r in receiver.received} == {done["key"]}
        assert json.loads(receiver.received[1].body)["data"]["alias"] == "staging"
