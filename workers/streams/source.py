"""What stream scoring asks of a message bus: the `Source` protocol and the values that cross it.

A source hands out messages to one consumer of a consumer group, takes back what became of
them (sink entries, dead letters, acknowledgements) in one atomic call, and says how far the
group is behind. redis_source.py implements it on Redis Streams; docs/streams.md says
what a Kafka source would need."""

from dataclasses import dataclass
from typing import Protocol

SOURCE_PREFIX = b"source."  # a dead letter's copies of the original fields: no clash with its own


@dataclass(frozen=True, slots=True)
class Message:
    """One source message: its id in the source (a Redis entry id, a Kafka topic-partition-offset)
    and its fields. `created_ms` is when the producer wrote it (a Redis id's millisecond part, a
    Kafka record's timestamp), None where the bus does not say: it is what `queued_ms` counts from."""

    id: str
    fields: dict[bytes, bytes]
    created_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Prediction:
    """A sink entry to write for source message `source_id`, its fields already encoded."""

    source_id: str
    fields: dict[bytes, bytes]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that cannot be scored, and why: written once to the dead-letter stream."""

    source_id: str
    reason: str
    fields: dict[bytes, bytes]  # the original message's

    def entry(self) -> dict[bytes, bytes]:
        """The dead-letter entry: source_id, reason, and each original field as `source.<name>`."""
        entry = {b"source_id": self.source_id.encode(), b"reason": self.reason.encode()}
        entry.update((SOURCE_PREFIX + name, value) for name, value in self.fields.items())
        return entry


@dataclass(frozen=True, slots=True)
class Lag:
    """How far a consumer group is behind its source."""

    pending: int  # handed to a consumer, not acknowledged yet (in flight, or its consumer died)
    undelivered: int  # in the source, not handed to any consumer of the group yet
    exact: bool = True  # False: `undelivered` was counted up to a limit and there are more

    @property
    def total(self) -> int:
        """Messages the group has still to answer."""
        return self.pending + self.undelivered


class Source(Protocol):
    """A message-bus source read by one consumer of a consumer group."""

    def read(self, count: int, block_ms: int) -> list[Message]:
        """Up to `count` messages no consumer of the group has had yet, waiting up to `block_ms`
        for the first (0: return at once)."""
        ...

    def claim_stale(self, min_idle_ms: int, count: int) -> list[Message]:
        """Up to `count` messages another consumer took but has not acknowledged for `min_idle_ms`
        (it was killed, or is stuck), now this consumer's."""
        ...

    def deliver(self, predictions: list[Prediction], dead: list[DeadLetter], ack: list[str]) -> int:
        """Atomically: write each prediction to the sink and each dead letter to the dead-letter
        stream unless an entry for its source id was written before, and acknowledge `ack`.
        Returns how many predictions were newly written."""
        ...

    def lag(self) -> Lag:
        """The group's pending and undelivered counts."""
        ...

    def close(self) -> None:
        """Release the connection; the group and its pending messages stay for the next consumer."""
        ...
