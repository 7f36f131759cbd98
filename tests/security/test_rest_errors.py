"""Issue 20, item 6: an unexpected exception on the REST infer route is answered 500 with v2's
body and a request id only (nothing of the exception), counted as 500 in Prometheus and the live
figures (it was counted as 200), and its traceback logged once under that id.

The fault is real: a reply no worker would send (an output of datatype "FP99", as from a worker
of another release or a forged one) published on the web process's reply channel. A web process
of this module's own, on a Redis prefix no worker reads, holds the request until it comes."""

import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import redis
from django.conf import settings

from serving.v2 import wire
from tests.conftest import Process, child_env, spawn_web, stop, wait_until
from tests.integration.test_serving import call, x_input
from tests.security.conftest import Served

INTERNAL = re.compile(r"internal error \(request id (?P<id>[0-9a-f]{16})\)")


@dataclass
class Lonely:
    """A web process whose Redis prefix no worker reads: its requests wait in their stream."""

    process: Process
    url: str
    prefix: str

    @property
    def log(self) -> Path:
        return self.process.log


@pytest.fixture
def lonely(served: Served, tmp_path: Path) -> Iterator[Lonely]:
    prefix = f"paddock-lonely-{secrets.token_hex(4)}"
    process, url = spawn_web(tmp_path / "web.log", env=child_env(PADDOCK_REDIS_PREFIX=prefix))
    yield Lonely(process, url, prefix)
    stop(process)
    queue = redis.Redis.from_url(settings.REDIS_URL)
    for key in queue.scan_iter(match=f"{prefix}:*"):
        queue.delete(key)
    queue.close()


def test_an_unexpected_exception_is_a_counted_500_with_a_request_id_and_one_traceback(
        served: Served, lonely: Lonely) -> None:
    queue = redis.Redis.from_url(settings.REDIS_URL)
    stream = f"{lonely.prefix}:v{served.version.pk}-{served.version.sha256[:12]}:requests"
    answers: list[tuple[int, dict[str, str], bytes]] = []
    body = orjson.dumps({"inputs": [x_input([1, 8])], "parameters": {"timeout": 30_000_000}})
    caller = threading.Thread(target=lambda: answers.append(
        call(lonely.url, "POST", "/v2/models/iris/infer", body, served.token)))
    caller.start()
    entries = wait_until(lambda: queue.xrange(stream), timeout=20, interval=0.05)
    job = wire.unpack_request(entries[0][0], entries[0][1][wire.ENTRY_FIELD.encode()])
    forged = wire.reply(rid=job.rid, outputs=[["probs", "FP99", [1, 3], b"\x00" * 12]], batch=1)
    assert queue.publish(job.reply_to, wire.pack_replies([forged])) == 1
    caller.join(timeout=20)
    [(status, headers, payload)] = answers

    assert status == 500 and headers["content-type"] == "application/json"
    document = orjson.loads(payload)
    assert list(document) == ["error"]
    match = INTERNAL.fullmatch(document["error"])
    assert match is not None, document  # and so nothing of the exception: no 'FP99', no KeyError
    log = wait_until(lambda: "Traceback" in (text := lonely.log.read_text(errors="replace")) and text, timeout=5)
    assert log.count(match["id"]) == 1 and log.count("Traceback (most recent call last)") == 1
    assert f"infer on model 'iris' failed unexpectedly (request id {match['id']})" in log
    assert "KeyError: 'FP99'" in log and "Exception in ASGI application" not in log

    _, _, page = call(lonely.url, "GET", "/metrics", token=served.token)
    counted = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in page.decode().splitlines()
               if line.startswith("paddock_inference_requests_total{")}
    assert counted == {'paddock_inference_requests_total{code="500",model="iris",version="1"}': 1.0}

    def live_codes() -> dict[str, int] | None:
        codes: dict[str, int] = {}
        for key in queue.scan_iter(match=f"{lonely.prefix}:stats:{served.version.pk}:*"):
            for field, value in queue.hgetall(key).items():
                name = field.decode() if isinstance(field, bytes) else str(field)
                if name.startswith("c"):
                    codes[name] = codes.get(name, 0) + int(value)
        return codes or None

    assert wait_until(live_codes, timeout=5, interval=0.2) == {"c500": 1}  # flushed to Redis each second
    queue.close()


def test_a_request_that_fails_as_it_should_logs_no_traceback(served: Served, lonely: Lonely) -> None:
    status, _, payload = call(lonely.url, "POST", "/v2/models/iris/infer",
                              orjson.dumps({"inputs": [x_input([1, 7])]}), served.token)
    assert (status, orjson.loads(payload)) == (400, {"error": "input 'x': expected shape [-1, 8], received [1, 7]"})
    assert "Traceback" not in lonely.log.read_text(errors="replace")
