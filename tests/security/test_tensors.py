"""Issue 20, items 1 and 6 and the low items on parameters: hostile tensors and parameters sent to
the real web process. Each is refused with 400 and its exact v2 body, before anything of its
declared size is allocated: the web process's peak resident memory (VmHWM) and resident memory
(VmRSS) move by less than a few MB, and its peak address space (VmPeak) by less than 64 MB, which
is what shows `bytes(300000000)`: calloc's zero pages are never resident, yet 300 MB were taken
(and, for a model with a BYTES input, sent to the worker and echoed as 1.8 GB of JSON). Nothing
of a refused request reaches the model's request stream, nor the web log as a traceback."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
import pytest
import redis
from django.conf import settings
from websockets.sync.client import connect

from console.audit import Actor
from console.services import create_token
from registry import services
from serving.v2.wire import stream_key
from tests import models as built
from tests.integration.conftest import register_ready, wait_until_served
from tests.integration.test_serving import call, infer_json, x_input
from tests.security.conftest import Served, WebProcess

LIMIT = 64 * 1024 * 1024  # PADDOCK_MAX_INFER_BYTES, the suite's (default) value
GROWTH_KB = 8 * 1024  # "a few MB": what a refused request may add to the web process's resident peak
ADDRESS_GROWTH_KB = 64 * 1024  # its address space: glibc may map a 64 MB arena for a thread's first malloc
INFER = "/v2/models/iris/infer"
PRIORITY = "parameter 'priority' must be an integer from 0 (the default) to 8"


def hostile(*inputs: dict[str, Any], **parameters: Any) -> bytes:
    document: dict[str, Any] = {"inputs": list(inputs)}
    if parameters:
        document["parameters"] = parameters
    return json.dumps(document).encode()


def deep_json() -> bytes:
    """Over 16 KB (read by simdjson, which raised RuntimeError past its depth: a 500), 1100 deep."""
    nested = b"[" * 1100 + b"]" * 1100
    return b'{"parameters": {"note": "' + b"n" * 20_000 + b'"}, "inputs": [{"name": "x", "data": ' + nested + b"}]}"


def orjsons_verdict(body: bytes) -> str:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return f"request body is not valid JSON: {exc}"
    raise AssertionError("valid JSON")


def strings_among_numbers() -> bytes:
    """20,000 numbers and one 200,000-character string, 300 KB: numpy made them one string array of
    20,001 × 800 KB (16 GB) before the kind check (a MemoryError, or the machine's memory)."""
    data = [0.5] * 20_000 + ["s" * 200_000]
    return hostile({"name": "x", "datatype": "FP32", "shape": [2_501, 8], "data": data})


def binary(header: dict[str, Any], payload: bytes) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(header).encode()
    return raw + payload, {"Inference-Header-Content-Length": str(len(raw))}


# case → (body, headers, exact v2 error message)
HOSTILE: dict[str, tuple[bytes, dict[str, str], str]] = {
    "BYTES data as an integer (75 bytes asking for 300 MB)": (
        b'{"inputs":[{"name":"x","datatype":"BYTES","shape":[1],"data":[300000000]}]}', {},
        "input 'x': BYTES data must be strings"),
    "BYTES data as integers, nested": (
        hostile({"name": "x", "datatype": "BYTES", "shape": [1, 2], "data": [[300000000, 300000000]]}), {},
        "input 'x': BYTES data must be strings"),
    "BYTES of shape [2**40]": (
        hostile({"name": "x", "datatype": "BYTES", "shape": [2**40], "data": []}), {},
        f"input 'x': shape [1099511627776] of BYTES is at least 4398046511104 bytes (4 per element), over the "
        f"limit of {LIMIT} bytes per request"),
    "BYTES of shape [2**40], binary": (
        *binary({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [2**40],
                             "parameters": {"binary_data_size": 4}}]}, b"\x00" * 4),
        f"input 'x': shape [1099511627776] of BYTES is at least 4398046511104 bytes (4 per element), over the "
        f"limit of {LIMIT} bytes per request"),
    "shape [0, 2**62]": (
        hostile({"name": "x", "datatype": "FP32", "shape": [0, 2**62], "data": []}), {},
        f"input 'x': shape [0, 4611686018427387904] of FP32 spans 18446744073709551616 bytes besides its 0 "
        f"dimension, over the limit of {LIMIT} bytes per request"),
    "shape [0, 2**62], binary": (
        *binary({"inputs": [{"name": "x", "datatype": "FP32", "shape": [0, 2**62],
                             "parameters": {"binary_data_size": 0}}]}, b""),
        f"input 'x': shape [0, 4611686018427387904] of FP32 spans 18446744073709551616 bytes besides its 0 "
        f"dimension, over the limit of {LIMIT} bytes per request"),
    "70 dimensions": (
        hostile({"name": "x", "datatype": "FP32", "shape": [1] * 70, "data": [0]}), {},
        "input 'x': shape has 70 dimensions; at most 16 are allowed"),
    "17 dimensions": (
        hostile({"name": "x", "datatype": "FP32", "shape": [1] * 17, "data": [0]}), {},
        "input 'x': shape has 17 dimensions; at most 16 are allowed"),
    "300,000,000 rows declared": (
        hostile({"name": "x", "datatype": "FP32", "shape": [300_000_000, 8], "data": [0] * 8}), {},
        f"input 'x': shape [300000000, 8] of FP32 is 9600000000 bytes, over the limit of {LIMIT} bytes per request"),
    "2**61 rows declared, binary": (
        *binary({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2**61, 8],
                             "parameters": {"binary_data_size": 32}}]}, b"\x00" * 32),
        f"input 'x': shape [2305843009213693952, 8] of FP32 is 73786976294838206464 bytes, over the limit of "
        f"{LIMIT} bytes per request"),
    "one long string among 20,000 numbers": (
        strings_among_numbers(), {}, "input 'x': data is not FP32 (received string values)"),
    "JSON nested 1100 deep, 20 KB": (
        deep_json(), {}, orjsons_verdict(deep_json())),
    "Inference-Header-Content-Length of '²'": (
        hostile(x_input([1, 8])), {"Inference-Header-Content-Length": "\u00b2"},
        "Inference-Header-Content-Length must be a whole number of bytes"),
    "Inference-Header-Content-Length of 5000 digits": (
        hostile(x_input([1, 8])), {"Inference-Header-Content-Length": "9" * 5000},
        "Inference-Header-Content-Length must be a whole number of bytes"),
    "priority 2**64": (
        hostile(x_input([1, 8]), priority=2**64), {}, PRIORITY),
    "priority 9": (
        hostile(x_input([1, 8]), priority=9), {}, PRIORITY),
    "priority -1": (
        hostile(x_input([1, 8]), priority=-1), {}, PRIORITY),
    "timeout 2**64 - 1 µs": (
        hostile(x_input([1, 8]), timeout=2**64 - 1), {},
        "parameter 'timeout' is 18446744073709551615 microseconds; the most allowed is 60000000 (60 s)"),
    "timeout 2**70 µs (JSON reads it as a float)": (
        hostile(x_input([1, 8]), timeout=2**70), {}, "parameter 'timeout' must be a positive integer (microseconds)"),
    "timeout 60 s and 1 µs": (
        hostile(x_input([1, 8]), timeout=60_000_001), {},
        "parameter 'timeout' is 60000001 microseconds; the most allowed is 60000000 (60 s)"),
}


class Seen(NamedTuple):
    """The web process and the version's stream at one moment."""

    peak_kb: int  # VmHWM
    resident_kb: int  # VmRSS
    address_peak_kb: int  # VmPeak
    last_entry: bytes | None  # the stream's last-generated-id: moves when anything is enqueued
    tracebacks: int  # in the web log

    def assert_unchanged_by_a_refusal(self, before: "Seen") -> None:
        grown = (self.peak_kb - before.peak_kb, self.resident_kb - before.resident_kb,
                 self.address_peak_kb - before.address_peak_kb)
        assert grown[0] < GROWTH_KB and grown[1] < GROWTH_KB and grown[2] < ADDRESS_GROWTH_KB, (
            f"VmHWM, VmRSS, VmPeak grew by {grown} kB")
        assert (self.last_entry, self.tracebacks) == (before.last_entry, before.tracebacks)


@dataclass
class Watch:
    """What a refused request must leave as it was: the web process's memory, the version's
    request stream, the web log's tracebacks."""

    web: WebProcess
    queue: redis.Redis
    stream: str

    def state(self) -> Seen:
        info: dict[Any, Any] = self.queue.xinfo_stream(self.stream) if self.queue.exists(self.stream) else {}
        return Seen(self.web.memory_kb("VmHWM"), self.web.memory_kb("VmRSS"), self.web.memory_kb("VmPeak"),
                    info.get("last-generated-id"),
                    self.web.log.read_text(errors="replace").count("Traceback (most recent call last)"))


@pytest.fixture
def watch(served: Served, web_process: WebProcess) -> Iterator[Watch]:
    queue = redis.Redis.from_url(settings.REDIS_URL)
    # A served request first: what a first request allocates once is not the hostile one's.
    status, _, body = infer_json(web_process.url, served.token, "iris", {"inputs": [x_input([1, 8])]})
    assert status == 200, body
    yield Watch(web_process, queue, stream_key(served.version.pk, served.version.sha256))
    queue.close()


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_tensors_and_parameters_get_400_and_change_nothing(served: Served, watch: Watch, case: str) -> None:
    body, headers, message = HOSTILE[case]
    before = watch.state()
    status, _, payload = call(watch.web.url, "POST", INFER, body, served.token, headers)
    assert (status, orjson.loads(payload)) == (400, {"error": message})
    watch.state().assert_unchanged_by_a_refusal(before)


def test_the_largest_priority_and_timeout_are_served(served: Served, web_process: WebProcess,
                                                    cast: dict[str, Any]) -> None:
    _, ahead = create_token(actor=Actor.system("tests"), user=cast["engineer"], name="ahead",
                            scopes=["predict", "priority"])
    document = {"inputs": [x_input([1, 8])], "parameters": {"priority": 8, "timeout": 60_000_000}}
    status, _, body = infer_json(web_process.url, ahead, "iris", document)
    assert status == 200 and body["outputs"][0]["shape"] == [1, 3], body


def test_a_priority_ahead_of_the_default_needs_the_priority_scope(served: Served, web_process: WebProcess) -> None:
    """Any explicit priority is served before the default 0: without the scope, any caller could
    put its requests ahead of every other tenant's."""
    document = {"inputs": [x_input([1, 8])], "parameters": {"priority": 1}}
    refusal = {"error": "a priority above the default needs a token with the 'priority' scope"}
    assert infer_json(web_process.url, served.token, "iris", document)[::2] == (403, refusal)
    with connect(web_process.url.replace("http", "ws", 1) + "/ws/v2/models/iris/infer",
                 additional_headers={"Authorization": f"Bearer {served.token}"}) as socket:
        socket.send(json.dumps({**document, "id": "p1"}))
        assert json.loads(socket.recv(timeout=30)) == {**refusal, "status": 403, "id": "p1"}
        socket.send(json.dumps({"inputs": [x_input([1, 8])], "id": "p0"}))
        assert json.loads(socket.recv(timeout=30))["id"] == "p0"  # the socket keeps serving


def test_bytes_inputs_take_strings_only_where_the_model_takes_bytes(
        served: Served, watch: Watch, cast: dict[str, Any], teams: dict[str, Any]) -> None:
    actor = Actor(user=cast["engineer"])
    model = services.create_model(actor=actor, name="identities", team=teams["ml"])
    version = register_ready(actor=actor, model=model, data=built.identity_per_datatype())
    wait_until_served(watch.web.url, served.token, "identities", 1)
    watch.stream = stream_key(version.pk, version.sha256)
    inputs = {t: {"name": f"in_{t}", "datatype": t, "shape": [1, 2], "data": [[0, 1]]} for t in built.DATATYPES}
    inputs["BOOL"]["data"] = [[True, False]]
    inputs["BYTES"]["data"] = [["héllo", ""]]
    status, _, body = infer_json(watch.web.url, served.token, "identities", {"inputs": list(inputs.values())})
    assert status == 200, body
    for refused in (300_000_000, 7.5, None, True, {"a": 1}):
        inputs["BYTES"]["data"] = [[refused, "x"]]
        before = watch.state()
        status, _, body = infer_json(watch.web.url, served.token, "identities", {"inputs": list(inputs.values())})
        assert (status, body) == (400, {"error": "input 'in_BYTES': BYTES data must be strings"}), refused
        watch.state().assert_unchanged_by_a_refusal(before)
