"""A `Source` on Redis Streams: a consumer group on the user's stream, predictions to a sink
stream, failures to a dead-letter stream, and one Lua script that writes both and acknowledges.

Exactly one sink entry per source message, whatever is killed when:
1. A message is acknowledged only by the script that writes its sink (or dead-letter) entry, and a
   script runs whole or not at all: a killed consumer leaves each of its messages either pending
   (claimed later by another consumer) or acknowledged with its entry written.
2. A message can be answered twice: a slow consumer's messages are claimed by another while it
   still runs them, or its script ran but the reply was lost. The script writes an entry only
   for a source id missing from a sorted set of ids answered (scored by the server's clock), so
   the second answer is acknowledged and dropped. Ids older than `dedup_seconds` leave the set.
3. The acknowledgements come last, and each id joins the set after its entry is written: a
   script stopped part-way (a write refused, out of memory) leaves its messages pending, to be
   answered again, and at worst writes an entry twice, never none.

Every key the script touches (stream, sink, dead letter, dedup set) must live on one node: in a
Redis Cluster give them one hash tag, e.g. `{clicks}:events` and `{clicks}:scores`."""

from collections.abc import Callable
from typing import Any

import redis
from redis.exceptions import ResponseError

from workers.streams.source import DeadLetter, Lag, Message, Prediction

_ACK_CHUNK = 1000  # ids per XACK inside the script: Lua's unpack() has a stack limit
_LAG_PAGE = 1000

# KEYS: stream, sink, dead letter, dedup set.
# ARGV: group, maxlen, dedup_seconds, predictions count, dead letters count, then per entry its
# source id, its field count and its fields and values, then the ids to acknowledge.
DELIVER_LUA = f"""
local now = tonumber(redis.call('TIME')[1])
local at = 6
local function write(key, count)
  local written = 0
  for _ = 1, count do
    local source_id = ARGV[at]
    local last = at + 1 + 2 * tonumber(ARGV[at + 1])
    if not redis.call('ZSCORE', KEYS[4], source_id) then
      redis.call('XADD', key, 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, at + 2, last))
      redis.call('ZADD', KEYS[4], now, source_id)  -- after the entry: a stop between them repeats, never loses
      written = written + 1
    end
    at = last + 1
  end
  return written
end
local predicted = write(KEYS[2], tonumber(ARGV[4]))
local dead = write(KEYS[3], tonumber(ARGV[5]))
local acked = 0
while at <= #ARGV do
  local last = math.min(at + {_ACK_CHUNK - 1}, #ARGV)
  acked = acked + redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, at, last))
  at = last + 1
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. (now - tonumber(ARGV[3])))
return {{predicted, dead, acked}}
"""


class RedisStreamSource:
    """Consumer `consumer` of group `group` on `stream`; predictions go to `sink`, failures to
    `dead_letter`. `start` is where a new group begins: "0" (the default) scores what the stream
    already holds, "$" only what arrives from now on; an existing group keeps its position.
    The client must return bytes (decode_responses off: tensors are binary) and its socket
    timeout must outlast the longest `block_ms` read."""

    def __init__(self, client: redis.Redis, *, stream: str, group: str, consumer: str, sink: str,
                 dead_letter: str, dedup_key: str | None = None, sink_maxlen: int = 1_000_000,
                 dedup_seconds: int = 86400, start: str = "0", lag_scan_limit: int = 100_000) -> None:
        if client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("RedisStreamSource needs a client with decode_responses off: messages carry raw bytes")
        self.client = client
        self.stream, self.group, self.consumer = stream, group, consumer
        self.sink, self.dead_letter = sink, dead_letter
        # Per stream and group: each group answers each of the stream's ids once. Prefixed with
        # the stream's name, so that it shares the stream's hash tag in a cluster.
        self.dedup_key = dedup_key or f"{stream}:{group}:answered"
        self.sink_maxlen, self.dedup_seconds = sink_maxlen, dedup_seconds
        self.start = start
        self.lag_scan_limit = lag_scan_limit
        self.script = client.register_script(DELIVER_LUA)  # EVALSHA, loaded on the first NOSCRIPT
        self.ensure_group()

    def ensure_group(self) -> None:
        """Create the group (and the stream) unless it exists."""
        try:
            self.client.xgroup_create(self.stream, self.group, id=self.start, mkstream=True)
        except ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    def read(self, count: int, block_ms: int) -> list[Message]:
        """XREADGROUP ">"; block_ms 0 returns at once (Redis's BLOCK 0 would wait forever)."""
        reply = self._regrouping(self.client.xreadgroup, self.group, self.consumer, {self.stream: ">"},
                                 count=count, block=block_ms or None)
        return [_message(entry_id, fields) for _, entries in reply or [] for entry_id, fields in entries]

    def claim_stale(self, min_idle_ms: int, count: int) -> list[Message]:
        """XAUTOCLAIM, following its cursor through the group's pending list once (or until
        `count` are claimed). Entries deleted from the stream meanwhile are dropped: Redis 7
        removes them from the pending list itself; 6.2 returns them empty, acknowledged here."""
        claimed: list[Message] = []
        gone: list[Any] = []
        cursor: Any = "0-0"
        while len(claimed) < count:
            reply = self._regrouping(self.client.xautoclaim, self.stream, self.group, self.consumer, min_idle_ms,
                                     cursor, count=count - len(claimed))
            cursor, entries = reply[0], reply[1]
            for entry_id, fields in entries:
                if fields is None:
                    gone.append(entry_id)
                else:
                    claimed.append(_message(entry_id, fields))
            if _text(cursor) == "0-0":
                break
        if gone:
            self.client.xack(self.stream, self.group, *gone)
        return claimed

    def deliver(self, predictions: list[Prediction], dead: list[DeadLetter], ack: list[str]) -> int:
        """One EVALSHA of DELIVER_LUA: sink and dead-letter entries (each once per source id),
        then XACK."""
        if not predictions and not dead and not ack:
            return 0
        args: list[Any] = [self.group, self.sink_maxlen, self.dedup_seconds, len(predictions), len(dead)]
        for source_id, fields in [*((p.source_id, p.fields) for p in predictions),
                                  *((d.source_id, d.entry()) for d in dead)]:
            args.append(source_id)
            args.append(len(fields))
            for name, value in fields.items():
                args.extend((name, value))
        args.extend(ack)
        predicted, _, _ = self.script(keys=[self.stream, self.sink, self.dead_letter, self.dedup_key], args=args)
        return int(predicted)

    def lag(self) -> Lag:
        """XINFO GROUPS: the group's `pending` and `lag`. Where Redis cannot say the lag (before
        7.0, or a group started at an arbitrary id, or entries deleted from the stream's middle)
        the entries after the group's last-delivered id are counted, up to `lag_scan_limit`."""
        try:
            groups = self.client.xinfo_groups(self.stream)
        except ResponseError:  # no stream: nothing to score
            return Lag(pending=0, undelivered=0)
        group = next((g for g in groups if _text(g["name"]) == self.group), None)
        if group is None:
            return Lag(pending=0, undelivered=0)
        pending = int(group["pending"])
        if group.get("lag") is not None:
            return Lag(pending=pending, undelivered=int(group["lag"]))
        counted, exact = self._count_after(_text(group["last-delivered-id"]))
        return Lag(pending=pending, undelivered=counted, exact=exact)

    def close(self) -> None:
        """Close the client's connections; the group and its pending entries stay in Redis."""
        self.client.close()

    def _count_after(self, last_id: str) -> tuple[int, bool]:
        counted = 0
        after = f"({last_id}"  # exclusive range start (Redis 6.2+)
        while counted < self.lag_scan_limit:
            wanted = min(_LAG_PAGE, self.lag_scan_limit - counted)
            page: list[Any] = self.client.xrange(self.stream, min=after, max="+", count=wanted) or []
            counted += len(page)
            if len(page) < wanted:
                return counted, True
            after = f"({_text(page[-1][0])}"
        more = bool(self.client.xrange(self.stream, min=after, max="+", count=1))
        return counted, not more

    def _regrouping(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a group command; if the stream (and with it the group) was deleted, make them
        again and run it once more."""
        try:
            return command(*args, **kwargs)
        except ResponseError as exc:
            if not str(exc).startswith("NOGROUP"):
                raise
            self.ensure_group()
            return command(*args, **kwargs)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _message(entry_id: bytes | str, fields: dict[bytes, bytes]) -> Message:
    """A Message; a Redis entry id's first part is its creation time in milliseconds."""
    text = _text(entry_id)
    return Message(id=text, fields=fields, created_ms=int(text.split("-", 1)[0]))
