"""The batcher: a thread in each worker process that serves the versions the worker holds.

Each round:
1. Once a second: plan which versions to hold (deployed + recently asked for, spread over the
   live workers by rendezvous hashing), load/evict, and publish a heartbeat.
2. XREADGROUP on every held version's stream at once: take what is queued now (never wait when
   idle), up to max_batch_size per version (one COUNT for all streams: the smallest, topped up
   at once for a version that allows more). A deployment that opts in (max_queue_delay_ms,
   capped at MAX_QUEUE_DELAY_MS) has its partial batch held by the lane until it fills or the
   delay ends, while the lane goes on reading and serving every other version.
3. Drop entries whose deadline has passed (reply a `deadline` error), concatenate the rest along the batch axis,
   run ONE inference per batch, split the outputs.
4. Publish the replies (one message per web process), XACK and XDEL: sent with the next
   XREADGROUP, in one write.
5. Once a second: claim the entries a dead worker took but left unanswered, and serve them.

The heartbeat (workers/heartbeat.py) has a thread of its own; it also recycles the worker past
its memory limit. Stopping (SIGTERM: Celery's warm shutdown) drains: the worker leaves the
workers hash, and every batch read or held is run and answered.

Steps 2-4 run in lanes: lane 0 is the batcher's own thread (it also plans and claims), and a
version deployed with `instances` N is served by lanes 0 to N-1, each a thread with its own
Redis connection that reads and runs whole batches on its own copy of the model (Triton's
instance_group). One lane's round trip and Python work overlap the others' compute, and no
lane waits for another's rows."""

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import redis
from django.conf import settings
from django.db import close_old_connections

from console.errors import DeadlineExceeded, InferenceError
from serving.v2.protocol import datatype_of
from serving.v2.routes import load_all_routes
from serving.v2.wire import (
    ENTRY_FIELD,
    GROUP,
    Job,
    fresh_heartbeats,
    now_ms,
    pack_tensor,
    reply,
    unpack_request,
    wanted_key,
    workers_key,
)
from workers.batching import batches, fills, instances_of, queue_delay_ms
from workers.cache import Held, ModelCache, Plan, rendezvous
from workers.devices import process_alive
from workers.heartbeat import Heartbeat
from workers.lane import Lane

logger = logging.getLogger(__name__)

PLAN_INTERVAL = 1.0
WANTED_TTL_SECONDS = 600
READ_BLOCK_MS = 100
DEAD_CLAIM_IDLE_MS = 250  # a dead process's entries: claimed at once, but by one worker only


class Batcher:
    """Serves the versions this worker holds: plans, loads, reads, batches, runs and replies."""

    def __init__(self, *, consumer: str | None = None, redis_url: str | None = None) -> None:
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.redis = redis.Redis.from_url(redis_url or settings.REDIS_URL, socket_timeout=5,
                                          socket_connect_timeout=2, health_check_interval=10)
        self.redis_url = redis_url or settings.REDIS_URL
        self.lanes = [Lane(0, self.redis_url)]
        self.counting = threading.Lock()  # held versions' batch and row counts, kept by every lane
        self.cache = ModelCache()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.next_plan = 0.0
        self.next_claim = 0.0
        self.batches_run = 0
        self.heartbeat = Heartbeat(self, self.redis_url)
        # Set when the worker should be started afresh (memory past its limit): it drains, then
        # `on_recycle` ends the process (the Celery bootstep sends it SIGTERM); without one, the
        # batcher just stops.
        self.recycling = threading.Event()
        self.on_recycle: Callable[[], None] | None = None
        self.jobs_queue: str | None = None  # this worker's own jobs queue (workers.bootsteps), in its heartbeat

    batches = staticmethod(batches)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the heartbeat, and lane 0 in its own daemon thread."""
        self.heartbeat.start()
        self.thread = threading.Thread(target=self.run, name="paddock-batcher", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Drain: every lane finishes the batch it runs, runs and answers what it read or holds,
        and sends its last replies and acknowledgements (PADDOCK_WORKER_DRAIN_SECONDS at most);
        the worker leaves the workers hash first, so that other workers take over its versions
        and nobody counts on it meanwhile."""
        self.stopping.set()
        self.heartbeat.stop()
        deadline = time.monotonic() + settings.PADDOCK_WORKER_DRAIN_SECONDS
        for thread in [self.thread, *(lane.thread for lane in self.lanes[1:])]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=max(0.1, deadline - time.monotonic()))
                if thread.is_alive():
                    logger.warning("%s still running after the drain timeout; its entries will be claimed",
                                   thread.name)

    def recycle(self, reason: str) -> None:
        """Stop taking batches and end the worker once it has drained, to be started afresh."""
        if self.recycling.is_set():
            return
        self.recycling.set()
        logger.warning("recycling worker %s: %s; draining, then exiting to be started again", self.consumer, reason)
        if self.on_recycle is not None:
            self.on_recycle()
        else:
            threading.Thread(target=self.stop, name="paddock-recycle", daemon=True).start()

    def run(self) -> None:
        """Lane 0's loop: plans and claims as well as batches."""
        logger.info("batcher %s started", self.consumer)
        self.loop(self.step, self.lanes[0])

    def run_lane(self, lane: Lane) -> None:
        """A lane's loop above 0: batches only."""
        self.loop(lambda: self.lane_round(lane), lane)

    def loop(self, round_: Any, lane: Lane) -> None:
        """Run rounds until stopped, outliving Redis outages and any one bad round."""
        while not self.stopping.is_set():
            try:
                round_()
            except redis.ConnectionError as exc:
                logger.warning("Redis unreachable (%s); retrying", exc)
                self.stopping.wait(0.5)
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):  # Redis restarted empty: recreate the groups
                    self.ensure_groups(list(self.cache.held.values()))
                else:
                    logger.exception("Redis refused a command")
                    self.stopping.wait(0.5)
            except Exception:  # noqa: BLE001 - the batcher must outlive any one bad round
                logger.exception("batcher round failed")
                self.stopping.wait(0.5)
        try:
            self.drain(lane)
        except redis.RedisError:
            logger.warning("could not send the last replies before stopping")

    def drain(self, lane: Lane) -> None:
        """Run what the lane still holds (batches waiting to fill) and send every reply and acknowledgement."""
        by_stream = {h.stream: h for h in list(self.cache.held.values())}
        for stream, entries in lane.due(everything=True):
            if stream in by_stream:
                self.serve(by_stream[stream], entries, lane)
        self.flush(lane)

    # -- one round -----------------------------------------------------------------------------

    def step(self) -> None:
        """One round of lane 0: plan once a second, take and serve, claim abandoned entries once a second."""
        now = time.monotonic()
        if now >= self.next_plan:
            self.flush()  # planning may load a model: the last batch's replies go first
            self.next_plan = now + PLAN_INTERVAL
            self.plan()
        held = list(self.cache.held.values())
        self.take(self.lanes[0], held)
        if now >= self.next_claim:
            self.flush()
            self.next_claim = now + 1.0
            self.claim_abandoned(held)

    def lane_round(self, lane: Lane) -> None:
        """A round of lane 1 or above: the versions with more instances than its index."""
        self.take(lane, [h for h in list(self.cache.held.values()) if lane.index < instances_of(h)])

    def take(self, lane: Lane, held: list[Held]) -> None:
        """Read what is queued on the lane's streams and serve it. A version that waits for fuller
        batches has its partial batch held by the lane (Lane.hold) until it fills or its delay
        ends; the read's block is cut to that moment, and every other version is served meanwhile."""
        if not held:
            self.flush(lane)
            self.stopping.wait(0.1)
            return
        by_stream = {h.stream: h for h in held}
        # One blocking read over every held stream takes one COUNT for all: the smallest
        # max_batch_size, so that no version's entries are taken beyond what its next batch
        # runs (the rest stay in the stream for any worker or lane); a version that filled it
        # and allows more is topped up at once.
        count = min(max(h.plan.settings["max_batch_size"], 1) for h in held)
        answer = self.read(list(by_stream), count=count, block=lane.block_ms(READ_BLOCK_MS), lane=lane)
        ready: list[tuple[Held, list[Any]]] = []
        for raw, entries in answer:
            version = by_stream[raw.decode()]
            entries = lane.waiting.pop(version.stream, []) + self.top_up(version, entries, count, lane)
            if fills(version, entries):
                lane.release(version.stream)
                ready.append((version, entries))
            else:  # held on, still due when its first entry's delay ends
                lane.hold(version.stream, entries, queue_delay_ms(version) / 1000)
        ready.extend((by_stream[stream], entries) for stream, entries in lane.due() if stream in by_stream)
        for index, (version, entries) in enumerate(ready):
            if index:
                self.flush(lane)  # one version's replies do not wait for another version's batch
            self.serve(version, entries, lane)

    def top_up(self, held: Held, entries: list[Any], count: int, lane: Lane | None = None) -> list[Any]:
        """Entries read with COUNT `count`: if that cut them short of this version's
        max_batch_size, take what else is queued now (never waiting)."""
        limit = max(held.plan.settings["max_batch_size"], 1)
        if len(entries) == count < limit:
            for _, new in self.read([held.stream], count=limit - count, block=None, lane=lane):
                entries.extend(new)
        return entries

    def serve(self, held: Held, entries: list[tuple[bytes, bytes | None]], lane: Lane | None = None) -> None:
        """Entries are (entry id, request payload), the payload None when a claimed entry was
        deleted meanwhile. Each batch's replies leave as soon as it has run: when the entries make
        several batches (claimed ones, or rows of other inner shapes), the first batch's callers
        do not wait for the last."""
        lane = lane or self.lanes[0]
        held.last_used = time.monotonic()
        done: list[Any] = []  # entries answered without a run: deleted, or past their deadline
        replies: list[tuple[str, dict[str, Any]]] = []
        live: list[Job] = []
        now = now_ms()
        for entry_id, payload in entries:
            if payload is None:
                done.append(entry_id)
                continue
            job = unpack_request(entry_id, payload)
            if job.deadline_ms <= now:
                error = f"the deadline passed after {now - job.enqueued_ms} ms in the queue"
                replies.append((job.reply_to, reply(rid=job.rid, kind=DeadlineExceeded.kind, error=error)))
                done.append(entry_id)
            else:
                live.append(job)
        # Lower priority numbers first; 0 (the default) after every explicit priority, as in Triton.
        live.sort(key=lambda j: (j.priority or float("inf"), j.enqueued_ms))
        batches = self.batches(held, live)
        for index, batch in enumerate(batches):
            if index:
                self.flush(lane)
            replies.extend(self.run_batch(held, batch, lane))
            done.extend(job.entry_id for job in batch)
            lane.respond(held.stream, replies, done)
            replies, done = [], []
        if done:
            lane.respond(held.stream, replies, done)

    def read(self, streams: list[str], *, count: int, block: int | None,
             lane: Lane | None = None) -> list[tuple[bytes, list[Any]]]:
        """XREADGROUP (block None: return at once), sent in one write after the replies of the
        last batches: the worker's one round trip per batch (and at one client, one wake-up less
        per request). Returns [(stream, [(entry id, payload), ...]), ...]."""
        lane = lane or self.lanes[0]
        commands, lane.unsent = lane.unsent, []
        blocking = ("BLOCK", block) if block is not None else ()
        commands.append(("XREADGROUP", "GROUP", GROUP, self.consumer, "COUNT", count, *blocking,
                         "STREAMS", *streams, *[">"] * len(streams)))
        answer = lane.hot.execute(commands)[-1] or []
        return [(stream, [(entry_id, fields[1] if fields else None) for entry_id, fields in entries])
                for stream, entries in answer]

    def flush(self, lane: Lane | None = None) -> None:
        """Send the lane's queued replies and acknowledgements now."""
        (lane or self.lanes[0]).flush()

    def run_batch(self, held: Held, jobs: list[Job], lane: Lane | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Run one inference for the jobs' rows and split the outputs into one reply each."""
        started_ms = now_ms()
        tick = time.perf_counter()
        rows = sum(job.rows for job in jobs)
        try:
            if len(jobs) == 1:
                feed = jobs[0].inputs
            else:
                feed = {name: np.concatenate([job.inputs[name] for job in jobs]) for name in jobs[0].inputs}
            if instances_of(held) > 1:  # the lane's own copy
                outputs = held.runtime.run(feed, instance=(lane or self.lanes[0]).index)
            else:
                outputs = held.runtime.run(feed)
        except Exception as exc:  # noqa: BLE001 - the runtime's error goes back to each caller
            logger.warning("inference failed for %s v%s: %s", held.plan.model, held.plan.number, exc)
            return [(job.reply_to, reply(rid=job.rid, kind=InferenceError.kind, error=f"inference failed: {exc}"))
                    for job in jobs]
        compute_ms = (time.perf_counter() - tick) * 1000
        with self.counting:
            held.batches += 1
            held.rows += rows
            self.batches_run += 1
        replies = []
        offset = 0
        for job in jobs:
            sliced = outputs if len(jobs) == 1 else {
                name: array[offset:offset + job.rows] for name, array in outputs.items()}
            offset += job.rows
            packed = [pack_tensor(name, datatype_of(array), array) for name, array in sliced.items()]
            replies.append((job.reply_to, reply(
                rid=job.rid, outputs=packed, queue_ms=max(0, started_ms - job.enqueued_ms),
                compute_ms=compute_ms, batch=rows)))
        return replies

    def claim_abandoned(self, held: list[Held]) -> None:
        """Take over and serve the entries dead workers left pending. Dead: no fresh heartbeat
        (heartbeats have a thread of their own, so a live worker's long batch, or a partial batch
        it holds for its queue delay, is never taken from it and run twice) and idle past the
        claim timeout; or, at once, a worker of this host whose process is gone (SIGKILL)."""
        live, dead = self.workers()
        for version in held:
            pending: list[dict[str, Any]] = cast(Any, self.redis.xpending_range(
                version.stream, GROUP, min="-", max="+", count=256))
            owners = {e["message_id"]: e["consumer"].decode() for e in pending if e["consumer"].decode() not in live}
            for gone in (True, False):  # min idle: of two workers claiming at once, only one gets an entry
                ids = [entry_id for entry_id, owner in owners.items() if (owner in dead) == gone]
                idle = DEAD_CLAIM_IDLE_MS if gone else settings.PADDOCK_CLAIM_IDLE_MS
                if ids:
                    self.serve_claimed(version, self.redis.xclaim(version.stream, GROUP, self.consumer,
                                                                  min_idle_time=idle, message_ids=ids))

    def serve_claimed(self, version: Held, claimed: Any) -> None:
        """Serve what XCLAIM returned (entries deleted meanwhile leave the pending list unreturned, Redis 7)."""
        if claimed:
            logger.warning("claimed %d abandoned request(s) of %s v%s", len(claimed), version.plan.model,
                           version.plan.number)
            self.serve(version, [(entry_id, (fields or {}).get(ENTRY_FIELD.encode())) for entry_id, fields in claimed])

    # -- planning ------------------------------------------------------------------------------

    def plan(self) -> None:
        """Decide which versions this worker holds, load or evict them, and publish a heartbeat."""
        close_old_connections()
        workers = self.live_workers()
        cutoff = time.time() - WANTED_TTL_SECONDS
        self.redis.zremrangebyscore(wanted_key(), "-inf", f"({cutoff}")
        wanted = {int(cast(bytes, v)) for v in self.redis.zrangebyscore(wanted_key(), cutoff, "+inf")}
        plans = []
        for route in load_all_routes():
            held = route.held_numbers
            for number, version in route.versions.items():
                deployed = number in held
                if not version.is_servable() or not (deployed or version.version_id in wanted):
                    continue
                count = min(route.settings["min_workers"], len(workers))
                if self.consumer not in rendezvous(version.version_id, workers, count):
                    continue
                plans.append(Plan(version.version_id, route.name, number, version.batchable, route.settings,
                                  sha256=version.sha256, priority=1.0 if deployed else 0.0))
        loaded = self.cache.sync(plans)
        self.ensure_groups([self.cache.held[v] for v in loaded])
        self.ensure_lanes()
        self.heartbeat.beat()  # what was loaded is known at once, not at the next beat

    def ensure_lanes(self) -> None:
        """As many lanes as the held version with the most instances needs; a lane that has
        nothing left to serve idles on a 100 ms wait until one does again."""
        wanted = max((instances_of(h) for h in list(self.cache.held.values())), default=1)
        while len(self.lanes) < wanted:
            lane = Lane(len(self.lanes), self.redis_url)
            lane.thread = threading.Thread(target=self.run_lane, args=(lane,), daemon=True,
                                           name=f"paddock-batcher-lane-{lane.index}")
            self.lanes.append(lane)
            lane.thread.start()

    def live_workers(self) -> list[str]:
        """This worker and every other live one, sorted (rendezvous hashing's input)."""
        return sorted(self.workers()[0])

    def workers(self) -> tuple[set[str], set[str]]:
        """The live workers: this one, and those with a fresh heartbeat but for the dead ones
        among them: on this host with their process gone (a SIGKILLed worker's heartbeat stays
        fresh for 5 s; its versions and requests need not wait that long)."""
        beats = fresh_heartbeats(self.redis.hgetall(workers_key()))
        host = socket.gethostname()
        dead = {name for name, beat in beats.items() if beat.get("host") == host and not process_alive(beat.get("pid"))}
        return {self.consumer, *beats} - dead, dead

    def ensure_groups(self, held: list[Held]) -> None:
        """Create each held stream's consumer group (from id 0) where it is missing."""
        for version in held:
            try:
                # From id 0: requests queued before any worker held the version are served too.
                self.redis.xgroup_create(version.stream, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

