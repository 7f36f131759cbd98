"""The lean Redis connections of the hot path (serving.v2.resp), against the real Redis: replies in
order, Redis' errors as ResponseError, published messages to the callback, a write-only
connection, and what happens when Redis goes away or stops answering."""

import asyncio
import socket
import uuid
from typing import Any

import pytest
import redis
from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from serving.v2 import resp


def key() -> str:
    return f"{settings.PADDOCK_REDIS_PREFIX}:resp-test:{uuid.uuid4().hex}"


def kill_client(client_id: int) -> None:
    redis.Redis.from_url(settings.REDIS_URL).execute_command("CLIENT", "KILL", "ID", client_id)


def test_replies_come_back_in_order_and_errors_as_response_errors() -> None:
    name = key()

    async def scenario() -> list[Any]:
        connection = await resp.connect(settings.REDIS_URL)
        # Sent in one tick: they leave in one write, and each future gets its own reply.
        futures = [connection.command("RPUSH", name, "a", "b"), connection.command("LRANGE", name, 0, -1),
                   connection.command("HGET", name, "field"), connection.command("GET", "no-such-key-" + name),
                   connection.command("DEL", name)]
        results = await asyncio.gather(*futures, return_exceptions=True)
        connection.close()
        return results

    pushed, listed, wrong_type, missing, deleted = asyncio.run(scenario())
    assert (pushed, listed, missing, deleted) == (2, [b"a", b"b"], None, 1)
    assert isinstance(wrong_type, ResponseError)
    assert str(wrong_type).startswith("WRONGTYPE")


def test_published_messages_reach_the_callback_and_a_write_only_connection_gets_no_replies() -> None:
    channel = key()

    async def scenario() -> list[bytes]:
        received: list[bytes] = []
        got_two = asyncio.Event()

        def on_message(message: bytes) -> None:
            received.append(message)
            if len(received) == 2:
                got_two.set()

        subscriber = await resp.connect(settings.REDIS_URL, on_message=on_message)
        assert await subscriber.command("SUBSCRIBE", channel) == [b"subscribe", channel.encode(), 1]
        writer = await resp.connect(settings.REDIS_URL)
        writer.send("CLIENT", "REPLY", "OFF")
        writer.send("PUBLISH", channel, b"one")
        writer.send("PUBLISH", channel, b"two")
        await asyncio.wait_for(got_two.wait(), 5)
        assert not writer.waiters  # nothing was expected back
        subscriber.close()
        writer.close()
        return received

    assert asyncio.run(scenario()) == [b"one", b"two"]


def test_a_killed_connection_fails_its_waiting_commands_and_says_so() -> None:
    async def scenario() -> tuple[BaseException, list[Exception]]:
        lost: list[Exception] = []
        connection = await resp.connect(settings.REDIS_URL, on_lost=lost.append)
        client_id = await connection.command("CLIENT", "ID")
        waiting = connection.command("BLPOP", key(), 30)
        await asyncio.sleep(0.05)
        await asyncio.to_thread(kill_client, client_id)
        with pytest.raises(RedisConnectionError) as failed:
            await asyncio.wait_for(waiting, 5)
        with pytest.raises(RedisConnectionError):
            connection.command("PING")  # a closed connection refuses at once
        return failed.value, lost

    error, lost = asyncio.run(scenario())
    assert "Redis" in str(error)
    assert lost == [error]  # the owner is told once


def test_a_redis_that_stops_answering_is_dropped_after_the_command_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resp, "COMMAND_TIMEOUT", 0.2)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts (the kernel does) and never answers

    async def scenario() -> BaseException:
        connection = await resp.connect(f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        with pytest.raises(RedisTimeoutError) as failed:
            await asyncio.wait_for(connection.command("PING"), 5)
        return failed.value

    try:
        assert str(asyncio.run(scenario())) == "Redis did not answer within 0.2 s"
    finally:
        silent.close()


def test_an_unreachable_redis_is_a_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there

    async def scenario() -> None:
        await resp.connect(f"redis://127.0.0.1:{port}/0")

    with pytest.raises(RedisConnectionError, match="cannot connect to Redis"):
        asyncio.run(scenario())
    with pytest.raises(RedisConnectionError, match="cannot connect to Redis"):
        resp.BlockingResp(f"redis://127.0.0.1:{port}/0").execute([("PING",)])


def test_the_blocking_connection_runs_commands_in_one_round_trip_and_reconnects() -> None:
    name = key()
    connection = resp.BlockingResp(settings.REDIS_URL)
    client_id, pushed, length = connection.execute([("CLIENT", "ID"), ("RPUSH", name, "x"), ("LLEN", name)])
    assert (pushed, length) == (1, 1)
    # An error reply raises, after every reply of the round trip has been read: the connection
    # stays in step (the next call gets its own replies).
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        connection.execute([("RPUSH", name, "y"), ("HGET", name, "f"), ("LLEN", name)])
    assert connection.execute([("LLEN", name)]) == [2]
    kill_client(client_id)
    with pytest.raises(RedisConnectionError, match="lost the connection to Redis"):
        connection.execute([("LLEN", name)])
    assert connection.execute([("LLEN", name), ("DEL", name)]) == [2, 1]  # reopened
    connection.close()


def test_the_data_plane_answers_a_refused_or_failed_enqueue_from_its_reply_channel() -> None:
    """Enqueueing expects no reply (a write-only connection): the script publishes a refusal or
    Redis' own error to the caller's reply channel, and the caller gets it at once, not at its
    deadline."""
    import numpy as np

    from console.errors import QueueFull, ServiceUnavailable
    from serving.v2.dataplane import DataPlane
    from serving.v2.protocol import InferRequest, Tensor
    from serving.v2.routes import ModelRoute, VersionRoute

    full, broken = key(), key()
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.xadd(full, {"m": b"ahead"})
    client.set(broken, "not a stream")

    def route(stream: str) -> tuple[ModelRoute, VersionRoute]:
        version = VersionRoute(1, 1, "ready", "onnx", [], [], True, "", stream)
        settings_ = {"max_queue_depth": 1, "default_timeout_ms": 30_000}
        return ModelRoute(1, "m", 1, {1: version}, 1, settings_), version

    request = InferRequest(None, [Tensor("x", "FP32", [1, 2], np.zeros((1, 2), np.float32))])

    async def scenario() -> tuple[BaseException, BaseException]:
        dataplane = DataPlane(settings.REDIS_URL)
        dataplane.holders, dataplane.holders_expire = {full: 1, broken: 1}, float("inf")  # no cold start
        outcomes = []
        for stream in (full, broken):
            with pytest.raises((QueueFull, ServiceUnavailable)) as refused:
                await asyncio.wait_for(dataplane.infer(*route(stream), request, 1), 5)
            outcomes.append(refused.value)
        return outcomes[0], outcomes[1]

    try:
        queue_full, failed = asyncio.run(scenario())
    finally:
        client.delete(full, broken)
    assert isinstance(queue_full, QueueFull)
    assert queue_full.message == "model 'm' version 1 has 1 requests queued, its limit is 1; retry later"
    assert isinstance(failed, ServiceUnavailable)
    assert failed.message == ("the request queue is unavailable (Redis: WRONGTYPE Operation against a key "
                              "holding the wrong kind of value); retry later")
