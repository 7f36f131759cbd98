"""A batch job's live figures and signals in Redis, beside its rows in the database: rows done
per chunk (a running chunk reports after each inference, so progress moves within a chunk), the
cancel flag a running chunk checks between inferences, and each running chunk's lease (renewed
by its worker; a lease that lapses means the worker died, and beat puts the chunk back)."""

import functools
import json
from collections.abc import Iterable
from typing import Any

import redis
from django.conf import settings

LEASE_SECONDS = 6  # a live chunk renews its lease every LEASE_SECONDS / 3
KEEP_SECONDS = 7 * 24 * 3600  # figures of a job nobody ended (its web process and workers all gone)


@functools.cache
def client() -> redis.Redis:
    """One connection pool per process for these small commands."""
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2)


def _key(job_id: int, what: str) -> str:
    return f"{settings.PADDOCK_REDIS_PREFIX}:job:{job_id}:{what}"


def lease_key(name: str) -> str:
    """The Redis key of a lease: `chunk:<id>` for a running chunk, `assembly:<job id>` for an assembly."""
    return f"{settings.PADDOCK_REDIS_PREFIX}:job-lease:{name}"


def report(job_id: int, index: int, rows: int) -> None:
    """Chunk `index` has `rows` rows done (set, not added: a chunk run again reports afresh)."""
    pipe = client().pipeline(transaction=False)
    pipe.hset(_key(job_id, "rows"), str(index), rows)
    pipe.expire(_key(job_id, "rows"), KEEP_SECONDS)
    pipe.execute()


def tick(job_id: int, model: str, index: int, rows: int, ran: int) -> bool:
    """A running chunk's news in one round trip: chunk `index` has `rows` rows done, `ran` more rows
    were run for the model; whether the job was cancelled meanwhile."""
    pipe = client().pipeline(transaction=False)
    pipe.hset(_key(job_id, "rows"), str(index), rows)
    pipe.expire(_key(job_id, "rows"), KEEP_SECONDS)
    pipe.hincrby(_processed_key(), model, ran)
    pipe.exists(_key(job_id, "cancel"))
    return bool(pipe.execute()[-1])


def rows_done(job_id: int) -> int | None:
    """Rows done over every chunk, as the chunks last reported; None when Redis cannot say."""
    try:
        return sum(int(v) for v in client().hvals(_key(job_id, "rows")))
    except redis.RedisError:
        return None


def cancel(job_id: int) -> None:
    """Tell the job's running chunks to stop after their current inference."""
    client().set(_key(job_id, "cancel"), 1, ex=KEEP_SECONDS)


def forget(job_id: int) -> None:
    """An ended job's figures (the database has its outcome)."""
    pipe = client().pipeline(transaction=False)
    pipe.delete(_key(job_id, "rows"))
    pipe.hdel(_live_key(), str(job_id))
    pipe.execute()


def _live_key() -> str:
    return f"{settings.PADDOCK_REDIS_PREFIX}:jobs:live"


def _processed_key() -> str:
    return f"{settings.PADDOCK_REDIS_PREFIX}:jobs:rows"


def track(job_id: int, model: str, rows_total: int) -> None:
    """A job was submitted: /metrics shows it until it ends."""
    client().hset(_live_key(), str(job_id), json.dumps({"model": model, "rows": rows_total}))


def processed(model: str, rows: int) -> None:
    """Rows a chunk just ran (a counter per model, across every worker; a chunk run again counts again)."""
    client().hincrby(_processed_key(), model, rows)


def figures(conn: redis.Redis) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """For /metrics: each live job (id, model, rows, rows done) and rows run per model."""
    jobs = [(int(raw_id), json.loads(raw)) for raw_id, raw in conn.hgetall(_live_key()).items()]
    pipe = conn.pipeline(transaction=False)  # every job's chunk rows in one round trip
    for job_id, _ in jobs:
        pipe.hvals(_key(job_id, "rows"))
    rows = pipe.execute() if jobs else []
    live = [{"job": job_id, **about, "done": sum(int(v) for v in done)}
            for (job_id, about), done in zip(jobs, rows, strict=True)]
    counts = {name.decode() if isinstance(name, bytes) else name: int(value)
              for name, value in conn.hgetall(_processed_key()).items()}
    return live, counts


def renew_lease(name: str, worker: str) -> None:
    """The chunk (or assembly) is still being worked on by `worker`."""
    client().set(lease_key(name), worker, ex=LEASE_SECONDS)


def drop_lease(name: str) -> None:
    """The attempt ended (done or failed)."""
    client().delete(lease_key(name))


def leased(names: Iterable[str]) -> set[str]:
    """Those of the leases that are live."""
    wanted = list(names)
    if not wanted:
        return set()
    pipe = client().pipeline(transaction=False)
    for name in wanted:
        pipe.exists(lease_key(name))
    return {name for name, alive in zip(wanted, pipe.execute(), strict=True) if alive}
