"""Byte budgets of requests in flight (issue 20 item 10), against a real web process started with
tiny budgets and the real worker. The worker is paused (SIGSTOP) while a test needs requests to stay
in flight, so what is admitted and what is refused is exact: a token past its budget, then the
process past its own, get 429 with Retry-After and the budget named, while another token is still
served; a request is charged its bytes as received and its decoded copies; refused, failed and
cancelled requests give their bytes back (`paddock_web_inflight_bytes` returns to 0); a websocket's
messages past the budget get 429 replies with their ids and the socket stays open; shadows past
their byte cap are skipped and counted."""

import os
import re
import signal
import struct
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
import orjson
import pytest
from websockets.sync.client import connect

from console.audit import Actor
from console.services import create_token
from serving.v2.budget import BYTES_ELEMENT_BYTES, REQUEST_OVERHEAD_BYTES, request_bytes
from serving.v2.protocol import decode_request
from tests import models as built
from tests.conftest import Process, child_env, spawn_web, stop, wait_until
from tests.integration.conftest import wait_until_served
from tests.integration.test_rollouts import add_version, pin_v1
from tests.integration.test_serving import call
from tests.security.conftest import Served

ROWS = 64  # the deployment's max_batch_size by default
X = np.full((ROWS, 8), 0.5, np.float32)


def document(x: np.ndarray = X, **extra: Any) -> dict[str, Any]:
    return {**extra, "inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}


BODY = orjson.dumps(document())
CHARGE = len(BODY) + X.nbytes + REQUEST_OVERHEAD_BYTES  # JSON: the body as received and the decoded copy
# A token holds two requests, not three; the process three, not four; the shadow backlog one.
TOKEN_BUDGET = CHARGE * 5 // 2
WEB_BUDGET = CHARGE * 7 // 2
SHADOW_BUDGET = CHARGE * 3 // 2
INFER = "/v2/models/iris/infer"


def token_refusal(held: int) -> str:
    return f"this token has {held} bytes of requests in flight in this web process, its budget is {TOKEN_BUDGET}; " \
           "retry later"


def process_refusal(held: int) -> str:
    return f"this web process has {held} bytes of requests in flight, its budget is {WEB_BUDGET}; retry later"


@pytest.fixture(scope="module")
def budgets_process(_real_postgres: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Process, str]]:
    process, url = spawn_web(tmp_path_factory.mktemp("budgets-web") / "web.log", env=child_env(
        PADDOCK_WEB_INFLIGHT_BYTES=str(WEB_BUDGET), PADDOCK_TOKEN_INFLIGHT_BYTES=str(TOKEN_BUDGET),
        PADDOCK_SHADOW_BACKLOG_BYTES=str(SHADOW_BUDGET)))
    yield process, url
    stop(process)


@pytest.fixture
def tight(served: Served, budgets_process: tuple[Process, str]) -> str:
    """The tiny-budget web process's URL, once its route cache knows this test's model."""
    url = budgets_process[1]
    wait_until_served(url, served.token, "iris", 1)
    return url


@pytest.fixture
def second_token(served: Served, cast: dict[str, Any]) -> str:
    _, raw = create_token(actor=Actor.system("tests"), user=cast["engineer"], name="second", scopes=["predict"])
    return raw


@contextmanager
def paused(worker: Process) -> Iterator[None]:
    """The real worker stopped: what is enqueued meanwhile waits in Redis, its callers in flight.
    Kept short (its heartbeat is fresh for 5 s)."""
    os.kill(worker.popen.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(worker.popen.pid, signal.SIGCONT)


def gauge(base: str, token: str, name: str = "paddock_web_inflight_bytes") -> int:
    _, _, page = call(base, "GET", "/metrics", token=token)
    found = re.search(rb"^" + name.encode() + rb" (\S+)$", page, re.MULTILINE)
    assert found is not None, page.decode()[-2000:]
    return int(float(found[1]))


def counter(base: str, token: str, outcome: str) -> int:
    _, _, page = call(base, "GET", "/metrics", token=token)
    found = re.search(rb'^paddock_shadow_requests_total\{model="iris",outcome="' + outcome.encode()
                      + rb'",version="2"\} (\S+)$', page, re.MULTILINE)
    return int(float(found[1])) if found else 0


def infer(base: str, token: str, body: bytes = BODY, **headers: str) -> tuple[int, dict[str, str], Any]:
    status, response_headers, payload = call(base, "POST", INFER, body, token, headers)
    return status, response_headers, orjson.loads(payload)


def refused(futures: list[Future[Any]]) -> list[tuple[int, dict[str, str], Any]]:
    return [future.result() for future in futures if future.done()]


def answered(futures: list[Future[Any]]) -> None:
    for future in futures:
        status, _, body = future.result(timeout=30)
        assert status == 200 and body["outputs"][0]["shape"] == [ROWS, 3], body


def test_a_request_is_charged_its_bytes_as_received_and_its_decoded_copies() -> None:
    assert request_bytes(decode_request(BODY), len(BODY)) == CHARGE
    padded = BODY[:-1] + b" " * 100_000 + b"}"  # whitespace: free to send, yet held here
    assert request_bytes(decode_request(padded), len(padded)) == len(padded) + X.nbytes + REQUEST_OVERHEAD_BYTES
    header = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [ROWS, 8],
                                       "parameters": {"binary_data_size": X.nbytes}}]})
    binary = header + X.tobytes()  # the array is a view of the body: counted once
    assert request_bytes(decode_request(binary, len(header)), len(binary)) == len(binary) + REQUEST_OVERHEAD_BYTES
    header = orjson.dumps({"inputs": [{"name": "s", "datatype": "BYTES", "shape": [3],
                                       "parameters": {"binary_data_size": 3 * 6}}]})
    strings = header + b"".join(struct.pack("<I", 2) + b"ab" for _ in range(3))
    # Each element is a Python object and a pointer; the contents are copies of what was received.
    assert request_bytes(decode_request(strings, len(header)), len(strings)) == (
        2 * len(strings) + 3 * BYTES_ELEMENT_BYTES + REQUEST_OVERHEAD_BYTES)


def test_a_token_past_its_budget_then_the_process_past_its_own_get_429_while_another_token_is_served(
        served: Served, tight: str, second_token: str, celery_worker: Process) -> None:
    with ThreadPoolExecutor(6) as pool, paused(celery_worker):
        first = [pool.submit(infer, tight, served.token) for _ in range(3)]
        wait_until(lambda: len(refused(first)) == 1 and gauge(tight, served.token) == 2 * CHARGE, timeout=10)
        [(status, headers, body)] = refused(first)
        assert (status, headers["retry-after"], body) == (429, "1", {"error": token_refusal(2 * CHARGE)})
        # The first token is at its budget; the second is let in until the process is at its own.
        second = [pool.submit(infer, tight, second_token) for _ in range(2)]
        wait_until(lambda: len(refused(second)) == 1 and gauge(tight, served.token) == 3 * CHARGE, timeout=10)
        [(status, headers, body)] = refused(second)
        assert (status, headers["retry-after"], body) == (429, "1", {"error": process_refusal(3 * CHARGE)})
    admitted = [future for future in first + second if future.result(timeout=30)[0] != 429]
    assert len(admitted) == 3
    answered(admitted)
    wait_until(lambda: gauge(tight, served.token) == 0, timeout=10)


def test_a_request_alone_may_pass_the_budget_and_is_charged_its_body_as_received(
        served: Served, tight: str, celery_worker: Process) -> None:
    padded = BODY[:-1] + b" " * (3 * CHARGE) + b"}"  # over the token's budget and the process's by itself
    charge = len(padded) + X.nbytes + REQUEST_OVERHEAD_BYTES
    header = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [ROWS, 8],
                                       "parameters": {"binary_data_size": X.nbytes}}]})
    with ThreadPoolExecutor(2) as pool:
        with paused(celery_worker):
            alone = pool.submit(infer, tight, served.token, padded)
            wait_until(lambda: gauge(tight, served.token) == charge, timeout=10)
            status, headers, body = infer(tight, served.token)
            assert (status, headers["retry-after"], body) == (429, "1", {"error": token_refusal(charge)})
        answered([alone])
        wait_until(lambda: gauge(tight, served.token) == 0, timeout=10)
        with paused(celery_worker):  # a binary tensor is a view of the body: charged once
            binary = pool.submit(infer, tight, served.token, header + X.tobytes(),
                                 **{"Content-Type": "application/octet-stream",
                                    "Inference-Header-Content-Length": str(len(header))})
            wait_until(lambda: gauge(tight, served.token) == len(header) + X.nbytes + REQUEST_OVERHEAD_BYTES,
                       timeout=10)
        answered([binary])
    wait_until(lambda: gauge(tight, served.token) == 0, timeout=10)


def test_refused_failed_and_cancelled_requests_give_their_bytes_back(
        served: Served, tight: str, second_token: str, celery_worker: Process) -> None:
    wrong_shape = orjson.dumps(document(np.zeros((ROWS, 7), np.float32)))
    short = orjson.dumps(document(parameters={"timeout": 300_000}))  # µs: 0.3 s, while the worker is paused
    message = orjson.dumps(document(id="m")).decode()
    with ThreadPoolExecutor(3) as pool, paused(celery_worker):
        # Failed after the charge: a 400 from the signature check, a 504 at the deadline.
        for _ in range(5):
            status, _, body = infer(tight, served.token, wrong_shape)
            assert (status, body) == (400, {"error": "input 'x': expected shape [-1, 8], received [64, 7]"})
        late = [pool.submit(infer, tight, served.token, short) for _ in range(3)]
        outcomes = sorted((status, body["error"]) for status, _, body in (f.result(timeout=10) for f in late))
        held = 2 * (len(short) + X.nbytes + REQUEST_OVERHEAD_BYTES)  # two in flight at once, the third refused
        late_answer = (504, "model 'iris' version 1 did not answer within 300 ms")
        assert outcomes == [(429, token_refusal(held)), late_answer, late_answer]
        assert gauge(tight, served.token) == 0
        # Cancelled: a socket closed with its requests in flight.
        with connect(tight.replace("http://", "ws://") + "/ws/v2/models/iris/infer",
                     additional_headers={"Authorization": f"Bearer {second_token}"}) as socket:
            socket.send(message)
            socket.send(message)
            wait_until(lambda: gauge(tight, served.token) == 2 * (len(message) + X.nbytes + REQUEST_OVERHEAD_BYTES),
                       timeout=10)
        wait_until(lambda: gauge(tight, served.token) == 0, timeout=10)
    status, _, _ = infer(tight, served.token)
    assert status == 200


def test_a_websocket_past_its_budget_gets_429_replies_with_their_ids_and_stays_open(
        served: Served, tight: str, celery_worker: Process) -> None:
    texts = [orjson.dumps(document(id=f"m{i}")).decode() for i in range(5)]
    charge = len(texts[0]) + X.nbytes + REQUEST_OVERHEAD_BYTES
    admitted = TOKEN_BUDGET // charge
    assert 1 <= admitted < 5
    with connect(tight.replace("http://", "ws://") + "/ws/v2/models/iris/infer",
                 additional_headers={"Authorization": f"Bearer {served.token}"}) as socket:
        with paused(celery_worker):
            for text in texts:
                socket.send(text)
            replies = [orjson.loads(socket.recv(timeout=10)) for _ in range(5 - admitted)]
            assert replies == [{"error": token_refusal(admitted * charge), "status": 429, "id": f"m{i}"}
                               for i in range(admitted, 5)]
            assert gauge(tight, served.token) == admitted * charge
        answers = [orjson.loads(socket.recv(timeout=30)) for _ in range(admitted)]
        assert sorted(answer["id"] for answer in answers) == [f"m{i}" for i in range(admitted)]
        assert all(answer["outputs"][0]["shape"] == [ROWS, 3] for answer in answers), answers
        socket.send(texts[0])  # the socket is still open and serving
        assert orjson.loads(socket.recv(timeout=30))["id"] == "m0"
    wait_until(lambda: gauge(tight, served.token) == 0, timeout=10)


def test_shadows_past_their_byte_cap_are_skipped_and_counted(
        served: Served, tight: str, cast: dict[str, Any], client_for: Any) -> None:
    add_version(served, cast, built.mlp_onnx(inputs=8, outputs=3, seed=7))
    api = client_for("engineer")
    pin_v1(api)
    assert api.patch("/api/v1/deployments/iris/", {"shadow_version": 2, "shadow_percent": 100},
                     format="json").status_code == 200
    skipped_before, ok_before = counter(tight, served.token, "skipped"), counter(tight, served.token, "ok")

    def live_and_shadows() -> bool:
        status, _, body = infer(tight, served.token)
        assert status == 200, body  # callers never see their shadow's fate
        # Mirrored requests wait 50 ms to leave together; the cap holds one (with its live answer).
        return (counter(tight, served.token, "skipped") > skipped_before
                and counter(tight, served.token, "ok") > ok_before)

    wait_until(live_and_shadows, timeout=30, interval=0)
    wait_until(lambda: gauge(tight, served.token, "paddock_shadow_backlog_bytes") == 0, timeout=10)
    assert gauge(tight, served.token) == 0
