"""Websocket streams: many requests in flight on one socket, replies carry their ids, bad
messages get an error message and the socket stays open, the token is checked at connect (and
again on every message: tests/security/test_streams.py)."""

import json
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.integration.conftest import Served


def ws_url(base: str, path: str = "/ws/v2/models/iris/infer") -> str:
    return base.replace("http://", "ws://") + path


def request(i: int) -> dict[str, Any]:
    x = np.random.default_rng(i).standard_normal((1, 8)).astype(np.float32)
    return {"id": f"r{i}", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": x.ravel().tolist()}]}


def test_many_requests_in_flight_on_one_socket_each_answered_with_its_id(served: Served, web_server: str) -> None:
    session = ort.InferenceSession(str(served.path))
    with connect(ws_url(web_server), additional_headers={"Authorization": f"Bearer {served.token}"}) as socket:
        for i in range(50):
            socket.send(json.dumps(request(i)))
        replies = {}
        for _ in range(50):
            reply = json.loads(socket.recv(timeout=30))
            replies[reply["id"]] = reply
    assert sorted(replies) == sorted(f"r{i}" for i in range(50))
    for i in range(50):
        x = np.array(request(i)["inputs"][0]["data"], dtype=np.float32).reshape(1, 8)
        expected = session.run(None, {"x": x})[0].ravel()
        reply = replies[f"r{i}"]
        assert reply["model_name"] == "iris" and reply["model_version"] == "1"
        np.testing.assert_allclose(reply["outputs"][0]["data"], expected, rtol=1e-5, atol=1e-6)


def test_the_stream_declines_permessage_deflate(served: Served, web_server: str) -> None:
    # websockets' client offers compression by default; zlib on every tensor message cost the
    # stream half its throughput on M2, so the server does not take it up unless told to.
    with connect(ws_url(web_server), additional_headers={"Authorization": f"Bearer {served.token}"}) as socket:
        assert socket.request is not None and socket.response is not None
        assert "permessage-deflate" in (socket.request.headers.get("Sec-WebSocket-Extensions") or "")
        assert socket.response.headers.get("Sec-WebSocket-Extensions") is None
        socket.send(json.dumps(request(0)))
        assert json.loads(socket.recv(timeout=30))["id"] == "r0"


def test_bad_messages_get_an_error_and_the_socket_stays_open(served: Served, web_server: str) -> None:
    with connect(ws_url(web_server), additional_headers={"Authorization": f"Bearer {served.token}"}) as socket:
        socket.send("{not json")
        error = json.loads(socket.recv(timeout=10))
        assert error["status"] == 400 and error["error"].startswith("message is not valid JSON: ")
        socket.send(json.dumps({"id": "bad-shape", "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1, 7], "data": [0] * 7}]}))
        assert json.loads(socket.recv(timeout=10)) == {
            "error": "input 'x': expected shape [-1, 8], received [1, 7]", "status": 400, "id": "bad-shape"}
        socket.send(json.dumps(request(1)))
        assert json.loads(socket.recv(timeout=10))["id"] == "r1"


@pytest.mark.parametrize(("token", "path", "code", "message"), [
    # Without a header the first message must carry the token; an infer request is not that.
    (None, "/ws/v2/models/iris/infer", 4401,
     "authentication required: send 'Authorization: Bearer <token>' or a first message {\"auth\": \"Bearer <token>\"}"),
    ("pdk_wrong", "/ws/v2/models/iris/infer", 4401, "invalid token"),
    ("served", "/ws/v2/models/nope/infer", 4404, "model 'nope' not found"),
])
def test_the_token_and_model_are_checked_at_connect(served: Served, web_server: str, token: str | None, path: str,
                                                    code: int, message: str) -> None:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {served.token if token == 'served' else token}"
    with connect(ws_url(web_server, path), additional_headers=headers) as socket:
        if token is None:
            socket.send(json.dumps(request(0)))
        assert json.loads(socket.recv(timeout=10)) == {"error": message, "status": code - 4000}
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (code, message)
