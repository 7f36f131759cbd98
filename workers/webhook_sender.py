"""Webhook deliveries, sent by threads of each worker process beside the batcher and the stream
runner (workers/bootsteps.py), never on the Celery pool: a receiver that takes its whole timeout
holds one sender thread, not the control queue that validations and rollout gates share.

1. The dispatcher thread looks for due deliveries (pending, next_attempt_at passed: the row is
   the message, so nothing is lost with a broker) every POLL_SECONDS, and at once when a sender
   comes free. It reads one row per target (webhooks.delivery.due_targets), so one target's
   backlog never hides another's.
2. Fairness: a free sender goes to the team with the fewest attempts in flight in this process,
   then to the target waiting longest. A team holds at most half of this process's senders (at
   least one), so a team whose receivers hang leaves the others room. A target has at most one
   attempt in flight across every worker: a Redis lock per webhook (SET NX, expiring with the
   attempt's lease), released once the attempt is recorded. Its deliveries go one at a time, in
   the order they were emitted (retries aside), and a hanging receiver gets one connection.
3. The attempt itself is claimed in the database (webhooks.delivery.claim_attempt: a conditional
   UPDATE on its count of attempts, which leases it): only one sender of one worker makes it.
   With Redis unreachable the lock is skipped (logged once); the claim still holds.
4. A sender thread signs, POSTs (cut off at PADDOCK_WEBHOOK_TIMEOUT_SECONDS) and records it.
   A worker that dies mid-attempt leaves the row pending with its lease as next_attempt_at: once
   the lease lapses (timeout + 30 s) it is due again, and any worker's dispatcher takes it
   (attempt N+1, the same idempotency key).
5. Stopping (Celery's warm shutdown) claims nothing more and waits for the attempts in flight
   (each at most the timeout) to be recorded."""

import contextlib
import logging
import queue
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from serving.v2.outage import DATABASE_DOWN, OutageLog
from webhooks.delivery import Claim, DueTarget, claim_attempt, due_targets, lease_seconds, make_attempt, next_due

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5
STOP_MARGIN_SECONDS = 5.0  # past the timeout, for recording the attempts in flight when the worker stops
_outage = OutageLog("webhook deliveries wait for it", "webhook deliveries are sent again")
# Release a target's lock only while it is still this attempt's (a lapsed one may be another's now).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def target_key(webhook_id: int) -> str:
    """The Redis key that says an attempt to this webhook's target is in flight somewhere."""
    return f"{settings.PADDOCK_REDIS_PREFIX}:webhooks:sending:{webhook_id}"


@dataclass(frozen=True)
class Job:
    """A claimed attempt handed to a sender thread, with its team and its target lock's token
    ('' when it was taken without one: Redis unreachable)."""

    claim: Claim
    team_id: int
    token: str


class WebhookSender:
    """A dispatcher thread and `senders` sender threads (steps 1-5 above)."""

    def __init__(self, senders: int) -> None:
        self.senders = senders
        self.team_share = max(1, senders // 2)
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.in_flight: dict[int, int] = {}  # webhook id -> team id, of this process's attempts
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.dispatcher: threading.Thread | None = None
        self.threads: list[threading.Thread] = []
        self.redis = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        self.release = self.redis.register_script(_RELEASE)
        self.redis_down = False

    def start(self) -> None:
        """Start the sender threads and the dispatcher, daemons all."""
        for number in range(self.senders):
            thread = threading.Thread(target=self.send, name=f"paddock-webhooks-{number}", daemon=True)
            thread.start()
            self.threads.append(thread)
        self.dispatcher = threading.Thread(target=self.dispatch_loop, name="paddock-webhooks", daemon=True)
        self.dispatcher.start()

    def stop(self) -> None:
        """Claim nothing more; wait for the attempts in flight to be recorded (step 5)."""
        with self.lock:
            self.stopping.set()  # under the lock: no job is handed out after this
        self.wake.set()
        deadline = time.monotonic() + settings.PADDOCK_WEBHOOK_TIMEOUT_SECONDS + STOP_MARGIN_SECONDS
        for _ in self.threads:
            self.jobs.put(None)
        for thread in [*self.threads, *([self.dispatcher] if self.dispatcher else [])]:
            if thread is not threading.current_thread():
                thread.join(timeout=max(0.0, deadline - time.monotonic()))

    # -- 1-3. the dispatcher ---------------------------------------------------------------

    def dispatch_loop(self) -> None:
        """Hand due attempts to free senders until stopped; an error in one round is logged and the next goes on."""
        while not self.stopping.is_set():
            self.wake.clear()
            try:
                close_old_connections()
                self.dispatch()
            except DATABASE_DOWN as error:
                _outage.failed(error)
                with contextlib.suppress(DatabaseError):
                    connection.close()  # the next round connects again
            except Exception:  # noqa: BLE001 - a bad row must not end the thread
                logger.exception("webhook dispatch failed")
            else:
                _outage.succeeded()
            self.wake.wait(POLL_SECONDS)
        with contextlib.suppress(DatabaseError):
            connection.close()  # this thread's own connection

    def dispatch(self) -> int:
        """One round: claim a due attempt for each free sender, fairly (steps 1-3); how many were handed out."""
        with self.lock:
            busy = dict(self.in_flight)
        free = self.senders - len(busy)
        if free <= 0:
            return 0
        candidates = due_targets(timezone.now(), exclude=busy)
        teams = Counter(busy.values())
        handed = 0
        while handed < free:
            eligible = [c for c in candidates if teams[c.team_id] < self.team_share]
            if not eligible:
                break
            candidate = min(eligible, key=lambda c: (teams[c.team_id], c.due))
            candidates.remove(candidate)
            if self.take(candidate):
                teams[candidate.team_id] += 1
                handed += 1
        return handed

    def take(self, candidate: DueTarget) -> bool:
        """Lock the candidate's target, claim its oldest due delivery and hand it to a sender."""
        token = self.lock_target(candidate.webhook_id)
        if token is None:
            return False  # an attempt to this target is in flight in another worker
        try:
            delivery = next_due(candidate.webhook_id, timezone.now())
            claim = claim_attempt(delivery) if delivery is not None else None
        except BaseException:
            self.unlock(candidate.webhook_id, token)
            raise
        with self.lock:
            if claim is not None and not self.stopping.is_set():
                self.in_flight[candidate.webhook_id] = candidate.team_id
                self.jobs.put(Job(claim, candidate.team_id, token))
                return True
        # Taken by another sender meanwhile, or stopping (then its lease lapses and it is tried again).
        self.unlock(candidate.webhook_id, token)
        return False

    def lock_target(self, webhook_id: int) -> str | None:
        """The token of this attempt's lock on the target ('' without Redis); None when it is held elsewhere."""
        token = uuid.uuid4().hex
        try:
            taken = self.redis.set(target_key(webhook_id), token, nx=True, px=int(lease_seconds() * 1000))
        except redis.RedisError as exc:
            if not self.redis_down:
                self.redis_down = True
                logger.warning("Redis is unreachable (%s): webhook attempts go on without their one-per-target "
                               "lock until it is back", exc)
            return ""
        if self.redis_down:
            self.redis_down = False
            logger.warning("Redis is reachable again: webhook attempts take their one-per-target lock again")
        return token if taken else None

    def unlock(self, webhook_id: int, token: str) -> None:
        """Release the target's lock if it is still this attempt's; an unreachable Redis lets it lapse."""
        if token:
            with contextlib.suppress(redis.RedisError):
                self.release(keys=[target_key(webhook_id)], args=[token])

    # -- 4. the senders --------------------------------------------------------------------

    def send(self) -> None:
        """A sender thread: make each attempt handed to it until told to stop (None)."""
        while (job := self.jobs.get()) is not None:
            with contextlib.suppress(DatabaseError):
                close_old_connections()
            self.run(job)
        with contextlib.suppress(DatabaseError):
            connection.close()  # this thread's own connection

    def run(self, job: Job) -> None:
        """Make one claimed attempt and record it; then free its target and its sender."""
        delivery, attempt = job.claim.delivery, job.claim.attempt
        try:
            make_attempt(job.claim)
        except DATABASE_DOWN as error:
            logger.warning("webhook delivery %s attempt %d: its outcome could not be recorded (the database is "
                           "unreachable: %s); it is tried again once its lease lapses", delivery.pk, attempt, error)
            with contextlib.suppress(DatabaseError):
                connection.close()
        except Exception:  # noqa: BLE001 - the thread serves the next attempt whatever this one did
            logger.exception("webhook delivery %s attempt %d failed", delivery.pk, attempt)
        finally:
            self.unlock(delivery.webhook_id, job.token)
            with self.lock:
                self.in_flight.pop(delivery.webhook_id, None)
            self.wake.set()  # a sender is free: the dispatcher looks again at once
