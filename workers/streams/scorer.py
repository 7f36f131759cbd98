"""The stream scorer: one binding's loop body, reading a Source and answering it through plain
callbacks (which version answers, its signature, how to run it), so that it knows nothing of
Django, the model cache or the deployment: the worker wires those in.

Each `step`:
1. Take up to `batch_size` messages: every `claim_every` rounds first those other consumers left
   unacknowledged for `claim_idle_ms` (topped up with new ones), otherwise new ones only.
2. Per message, the version that answers (`choose`), its signature (`signature_of`), and the
   decoded, checked inputs; a message that fails becomes a dead letter with the reason.
3. Group the good ones by version and by shape past the batch axis; per group, concatenate the
   inputs along the batch axis and make ONE `run` call; split the outputs back by row counts.
4. A group whose run fails is run again message by message; a message that still fails becomes
   a dead letter ("inference failed: ..."). A failure that says to retry later (a PaddockError
   whose kind has a Retry-After: the model not ready, a queue full) leaves its messages pending,
   to be claimed again after `claim_idle_ms`.
5. One `deliver`: the predictions and dead letters (in the source's order) and the
   acknowledgements of both."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from console.errors import PaddockError
from serving.v2.signature import DEFAULT_LIMITS, Limits
from workers.streams.messages import OUTPUT_FORMATS, Decoded, Signature, decode_message, prediction
from workers.streams.source import DeadLetter, Message, Prediction, Source

logger = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]
Answer = tuple[Decoded, Prediction | DeadLetter | None]  # None: left pending, to retry later


class _RetryLater(Exception):
    """A run failed in a way that says to try again later; the messages stay pending."""


@dataclass(slots=True)
class ScorerStats:
    """Counters since the scorer started, for metrics."""

    rounds: int = 0
    read: int = 0  # messages taken, new or claimed
    claimed: int = 0  # of those, claimed from another consumer (or from this one's earlier life)
    predicted: int = 0  # sink entries newly written
    duplicates: int = 0  # predictions dropped because the source id was answered before
    dead: int = 0  # dead letters sent
    deferred: int = 0  # messages left pending after a failure that said to retry later
    batches: int = 0  # run calls that answered, retries message by message included
    rows: int = 0  # rows run, along the batch axis
    shadow_errors: int = 0


class StreamScorer:
    """Scores one binding's source for model `model`.

    `choose(message)` names the version that answers (the deployment's traffic split);
    `signature_of(version)` gives its (inputs, outputs) signature; `run(version, inputs)` runs it;
    `shadow(version, inputs, outputs)`, when given, is called after each successful run with the
    version that answered, the batch's inputs and its outputs (its errors are logged and counted,
    never felt by the stream); `observe(version, queued_ms of each message, rows, compute_ms)`
    after each successful run, for the version's live figures. `choose` and `signature_of` may
    raise a PaddockError to dead-letter a message; any other exception leaves the round's
    messages pending and propagates."""

    def __init__(self, source: Source, *, signature_of: Callable[[int], tuple[Signature, Signature]],
                 choose: Callable[[Message], int], run: Callable[[int, Arrays], Arrays], model: str,
                 batch_size: int = 256, output_format: str = "json",
                 shadow: Callable[[int, Arrays, Arrays], None] | None = None, claim_every: int = 10,
                 claim_idle_ms: int = 30_000, limits: Limits = DEFAULT_LIMITS,
                 observe: Callable[[int, list[float], int, float], None] | None = None) -> None:
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}")
        if batch_size < 1 or claim_every < 1:
            raise ValueError("batch_size and claim_every must be at least 1")
        self.source = source
        self.signature_of, self.choose, self.run, self.shadow = signature_of, choose, run, shadow
        self.observe = observe
        self.model = model
        self.batch_size = batch_size
        self.output_format = output_format
        self.claim_every = claim_every
        # Longer than the slowest batch: a live consumer's messages idle for this long while it
        # runs them are claimed by another (dedup keeps the sink right, but the work is doubled).
        self.claim_idle_ms = claim_idle_ms
        self.limits = limits
        self.stats = ScorerStats()

    def step(self, block_ms: int) -> int:
        """One round (steps 1-5 above); returns the messages handled (0: nothing came in `block_ms`)."""
        messages = self._take(block_ms)
        if not messages:
            return 0
        read_ms = time.time() * 1000
        dead: list[DeadLetter] = []
        groups: dict[tuple[Any, ...], list[Decoded]] = {}
        signatures: dict[int, tuple[Signature, Signature]] = {}
        for message in messages:
            try:
                version = self.choose(message)
                if version not in signatures:
                    signatures[version] = self.signature_of(version)
                decoded = decode_message(message, version, *signatures[version], limits=self.limits)
            except PaddockError as exc:
                dead.append(DeadLetter(message.id, exc.message, message.fields))
                continue
            groups.setdefault(decoded.batch_key(), []).append(decoded)
        predictions: list[Prediction] = []
        deferred: set[str] = set()
        for members in groups.values():
            for decoded, answer in self._answer(members, read_ms):
                if isinstance(answer, Prediction):
                    predictions.append(answer)
                elif isinstance(answer, DeadLetter):
                    dead.append(answer)
                else:
                    deferred.add(decoded.message.id)
        order = {m.id: i for i, m in enumerate(messages)}  # the sink in the source's order, batches aside
        predictions.sort(key=lambda p: order[p.source_id])
        dead.sort(key=lambda d: order[d.source_id])
        ack = [m.id for m in messages if m.id not in deferred]
        written = self.source.deliver(predictions, dead, ack)
        self.stats.predicted += written
        self.stats.duplicates += len(predictions) - written
        self.stats.dead += len(dead)
        self.stats.deferred += len(deferred)
        return len(messages)

    def _take(self, block_ms: int) -> list[Message]:
        claiming = self.stats.rounds % self.claim_every == 0
        self.stats.rounds += 1
        messages = self.source.claim_stale(self.claim_idle_ms, self.batch_size) if claiming else []
        self.stats.claimed += len(messages)
        if len(messages) < self.batch_size:
            # Claimed ones are worked on at once: no waiting for new ones beside them.
            messages += self.source.read(self.batch_size - len(messages), 0 if messages else block_ms)
        self.stats.read += len(messages)
        return messages

    def _answer(self, members: list[Decoded], read_ms: float) -> list[Answer]:
        """Each member's prediction, dead letter, or None (left pending: retry later)."""
        try:
            return self._predict(members, read_ms)
        except _RetryLater:
            return [(decoded, None) for decoded in members]
        except Exception as exc:
            if len(members) == 1:
                return [(members[0], _failed(members[0], exc))]
            logger.info("a batch of %d messages for %s v%d failed (%s); running them one by one",
                        len(members), self.model, members[0].version, exc)
        answers: list[Answer] = []
        for decoded in members:
            try:
                answers += self._predict([decoded], read_ms)
            except _RetryLater:
                answers.append((decoded, None))
            except Exception as exc:
                answers.append((decoded, _failed(decoded, exc)))
        return answers

    def _predict(self, members: list[Decoded], read_ms: float) -> list[Answer]:
        """ONE run for the members (which share a batch key); raises what the run raised."""
        version = members[0].version
        batch = members[0].inputs if len(members) == 1 else {
            name: np.concatenate([d.inputs[name] for d in members], axis=0) for name in members[0].inputs}
        rows = sum(d.rows for d in members)
        started = time.perf_counter()
        try:
            outputs = self.run(version, batch)
        except PaddockError as exc:
            if exc.row.retry_after is not None:
                logger.warning("%s v%d cannot answer yet (%s): %d messages left pending",
                               self.model, version, exc, len(members))
                raise _RetryLater from exc
            raise
        compute_ms = (time.perf_counter() - started) * 1000
        self.stats.batches += 1
        self.stats.rows += rows
        if members[0].batchable:
            for name, array in outputs.items():
                if array.ndim == 0 or array.shape[0] != rows:
                    raise ValueError(f"the model returned {array.shape[0] if array.ndim else 0} rows of "
                                     f"'{name}' for {rows} input rows")
        if self.observe is not None:  # the version's live figures, as a web process counts a request
            self.observe(version, [read_ms - d.message.created_ms if d.message.created_ms else 0.0 for d in members],
                         rows, compute_ms)
        if self.shadow is not None:
            self._shadow(self.shadow, version, batch, outputs)
        answers: list[Answer] = []
        offset = 0
        for decoded in members:
            own = outputs if not decoded.batchable else {
                name: array[offset:offset + decoded.rows] for name, array in outputs.items()}
            offset += decoded.rows
            try:
                answers.append((decoded, prediction(message=decoded.message, model=self.model, version=version,
                                                    outputs=own, output_format=self.output_format,
                                                    read_ms=read_ms, compute_ms=compute_ms)))
            except PaddockError as exc:  # an output v2 cannot carry
                answers.append((decoded, DeadLetter(decoded.message.id, exc.message, decoded.message.fields)))
        return answers

    def _shadow(self, shadow: Callable[[int, Arrays, Arrays], None], version: int, batch: Arrays,
                outputs: Arrays) -> None:
        try:
            shadow(version, batch, outputs)
        except Exception:
            self.stats.shadow_errors += 1
            logger.exception("the shadow of %s v%d failed; the stream is not affected", self.model, version)


def _failed(decoded: Decoded, exc: Exception) -> DeadLetter:
    return DeadLetter(decoded.message.id, f"inference failed: {str(exc) or type(exc).__name__}",
                      decoded.message.fields)
