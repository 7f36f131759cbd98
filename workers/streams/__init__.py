"""Stream scoring: a binding reads events from a message-bus source with a consumer group,
predicts, and writes each prediction once to a sink stream (docs/streams.md).

    source.py        the Source protocol and the values that cross it (Message, Prediction, ...)
    redis_source.py  Source on Redis Streams: consumer group, sink, dead letters, one Lua deliver
    messages.py      message fields → checked input arrays; outputs → sink entry fields
    scorer.py        StreamScorer: one round of take, decode, batch, run, deliver

No Django here: the worker passes in which version answers, its signature and how to run it."""

from workers.streams.redis_source import RedisStreamSource
from workers.streams.scorer import ScorerStats, StreamScorer
from workers.streams.source import DeadLetter, Lag, Message, Prediction, Source

__all__ = ["DeadLetter", "Lag", "Message", "Prediction", "RedisStreamSource", "ScorerStats", "Source",
           "StreamScorer"]
