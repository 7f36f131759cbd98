"""Hostile websocket clients against the real server (issue 20: items 2, 6 and 10's websocket
half). A stream asks the token cache again on every message: a token revoked or expired, an
owner made inactive or taken off the model's team is refused within the cache's second, with the
error reply and the table's close code and reason. Tokens travel in the Authorization header or a
first message, never in the URL, and never reach the log. A bug answers its request with 500. A
process caps its open streams and the size of a message; an address's failed authentications are
throttled. The console's live figures check the session again before every push."""

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from console.audit import Actor
from console.models import ApiToken, Membership, hash_token
from console.services import create_token, revoke_token
from tests.conftest import ROOT, Process, _wait_for, child_env, free_port, port_open, stop
from tests.integration.conftest import wait_until_served
from tests.integration.test_serving import call
from tests.security.conftest import Served, WebProcess

HOW = "send 'Authorization: Bearer <token>' or a first message {\"auth\": \"Bearer <token>\"}"
AUTH_REQUIRED = f"authentication required: {HOW}"
TOKEN_IN_URL = "a token in the URL is refused (URLs get logged): send it in the Authorization header or a first message"


def ws_url(base: str, path: str = "/ws/v2/models/iris/infer") -> str:
    return base.replace("http://", "ws://") + path


def request(request_id: str) -> dict[str, Any]:
    return {"id": request_id, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": [0.5] * 8}]}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def closing(socket: ClientConnection) -> tuple[int, str]:
    """The close frame's code and reason once the server closes the socket."""
    with pytest.raises(ConnectionClosed) as closed:
        socket.recv(timeout=10)
    assert closed.value.rcvd is not None, "the server dropped the socket without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


def refusal(socket: ClientConnection) -> tuple[dict[str, Any], int, str]:
    """The error message, then the close code and reason."""
    return json.loads(socket.recv(timeout=10)), *closing(socket)


@contextmanager
def open_stream(base: str, token: str, how: str) -> Iterator[ClientConnection]:
    """A stream authenticated by the header or by its first message, proven by one answer."""
    headers = bearer(token) if how == "header" else {}
    with connect(ws_url(base), additional_headers=headers) as socket:
        if how != "header":
            socket.send(json.dumps({"auth": f"Bearer {token}"}))
        socket.send(json.dumps(request("first")))
        reply = json.loads(socket.recv(timeout=30))
        assert reply["id"] == "first" and "outputs" in reply, reply
        yield socket


def predict_until_refused(socket: ClientConnection) -> tuple[dict[str, Any], str]:
    """Send requests one at a time until one is refused (the token cache lets the change through
    within its TTL): the refusal and that request's id. A socket still answering after 600
    requests (30 s of them) was never going to be refused: that fails, as a hang guard."""
    for i in range(600):
        request_id = f"after-{i}"
        socket.send(json.dumps(request(request_id)))
        reply = json.loads(socket.recv(timeout=30))
        if "error" in reply:
            return reply, request_id
        assert reply["id"] == request_id and "outputs" in reply, reply
        time.sleep(0.05)
    raise AssertionError("never refused")


def engineer() -> Any:
    return get_user_model().objects.get(username="engineer")


def deactivate(served: Served | None = None) -> None:
    get_user_model().objects.filter(username="engineer").update(is_active=False)


def remove_from_team(served: Served | None = None) -> None:
    Membership.objects.filter(user__username="engineer", team__name="ml").delete()


def revoke(served: Served) -> None:
    revoke_token(actor=Actor.system("tests"), token=ApiToken.objects.get(digest=hash_token(served.token)))


@pytest.mark.parametrize("how", ["header", "first message"])
@pytest.mark.parametrize(("change", "code", "message"), [
    (revoke, 4401, "token revoked"),
    (deactivate, 4401, "token owner is inactive"),
    (remove_from_team, 4404, "model 'iris' not found"),
])
def test_an_open_stream_is_refused_within_the_token_cache_ttl_once_its_principal_changes(
        served: Served, web_process: WebProcess, how: str, change: Any, code: int, message: str) -> None:
    with open_stream(web_process.url, served.token, how) as socket:
        change(served)
        reply, request_id = predict_until_refused(socket)
        assert reply == {"error": message, "status": code - 4000, "id": request_id}
        assert closing(socket) == (code, message)
    assert served.token not in web_process.log.read_text()


def test_an_open_stream_is_refused_as_soon_as_its_token_expires(served: Served, web_process: WebProcess) -> None:
    expires_at = timezone.now() + timedelta(seconds=2)
    _, raw = create_token(actor=Actor(user=engineer()), user=engineer(), name="short", scopes=["predict"],
                          expires_at=expires_at)
    with open_stream(web_process.url, raw, "header") as socket:
        time.sleep(max(0.0, (expires_at - timezone.now()).total_seconds()) + 0.05)
        # The first message after the expiry is refused, cache or not: the expiry is cached with the principal.
        socket.send(json.dumps(request("after-expiry")))
        reply = json.loads(socket.recv(timeout=30))
        assert reply == {"error": "token expired", "status": 401, "id": "after-expiry"}
        assert closing(socket) == (4401, "token expired")


def test_a_token_in_the_url_is_refused_and_never_logged(served: Served, web_process: WebProcess) -> None:
    with connect(ws_url(web_process.url) + f"?token={served.token}") as socket:
        assert refusal(socket) == ({"error": TOKEN_IN_URL, "status": 401}, 4401, TOKEN_IN_URL)
    # uvicorn logs each websocket's path and query string: the value is redacted there.
    wait_until_logged(web_process, "/ws/v2/models/iris/infer?token=[redacted]")
    assert served.token not in web_process.log.read_text()


def test_a_token_elsewhere_in_the_url_is_redacted_from_the_log(served: Served, web_process: WebProcess) -> None:
    with connect(ws_url(web_process.url, f"/ws/v2/models/{served.token}/infer?access_token={served.token}"),
                 additional_headers=bearer(served.token)) as socket:
        message = f"model '{served.token}' not found"
        assert refusal(socket) == ({"error": message, "status": 404}, 4404, message)
    wait_until_logged(web_process, "/ws/v2/models/pdk_[redacted]/infer?access_token=[redacted]")
    assert served.token not in web_process.log.read_text()


def test_a_refusal_longer_than_a_close_frame_holds_is_cut_in_the_reason(served: Served,
                                                                          web_process: WebProcess) -> None:
    name = "é" * 100  # 200 bytes of UTF-8: the message is whole, the reason cut at a character's edge
    message = f"model '{name}' not found"
    with connect(ws_url(web_process.url, f"/ws/v2/models/{name}/infer"),
                 additional_headers=bearer(served.token)) as socket:
        reply, code, reason = refusal(socket)
    assert reply == {"error": message, "status": 404}
    assert (code, reason) == (4404, message.encode()[:120].decode(errors="ignore") + "...")
    assert len(reason.encode()) <= 123


def wait_until_logged(web_process: WebProcess, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in web_process.log.read_text():
        assert time.monotonic() < deadline, f"{text!r} not in the log"
        time.sleep(0.1)


def test_a_browser_authenticates_with_its_first_message(served: Served, web_process: WebProcess) -> None:
    with connect(ws_url(web_process.url)) as socket:
        socket.send(json.dumps({"auth": f"Bearer {served.token}"}))
        socket.send(json.dumps(request("r0")))  # no need to wait: the first message is read first
        reply = json.loads(socket.recv(timeout=30))
    assert reply["id"] == "r0" and reply["model_name"] == "iris" and len(reply["outputs"][0]["data"]) == 3


@pytest.mark.parametrize(("first", "message"), [
    ("not json", AUTH_REQUIRED),
    (json.dumps(request("r0")), AUTH_REQUIRED),
    (json.dumps({"auth": "{token}"}), AUTH_REQUIRED),  # no Bearer
    (json.dumps({"auth": ["Bearer", "{token}"]}), AUTH_REQUIRED),
    (json.dumps({"auth": "Bearer {token}", "padding": "x" * 5000}), AUTH_REQUIRED),  # too big to parse
    (json.dumps({"auth": "Bearer pdk_wrong"}), "invalid token"),
    (json.dumps({"auth": "Basic {token}"}), AUTH_REQUIRED),
])
def test_a_first_message_that_is_not_a_valid_token_is_refused(served: Served, web_process: WebProcess, first: str,
                                                               message: str) -> None:
    with connect(ws_url(web_process.url)) as socket:
        socket.send(first.replace("{token}", served.token))
        assert refusal(socket) == ({"error": message, "status": 401}, 4401, message)


# -- a web process of this module's own: small limits and an injected bug ---------------------

FAULTY_SERVER = """
import django
django.setup()
from serving.v2 import stream
checked = stream.check_request
def check_or_fail(request, *args, **kwargs):
    if (request.id or "").startswith("boom"):  # the injected bug: any request whose id says so
        raise RuntimeError("injected fault")
    return checked(request, *args, **kwargs)
stream.check_request = check_or_fail
from serving.v2.server import main
main()
"""
LIMITS = {"PADDOCK_WS_MAX_STREAMS": "2", "PADDOCK_WS_AUTH_SECONDS": "1", "PADDOCK_AUTH_FAILURE_LIMIT": "3",
          "PADDOCK_MAX_INFER_BYTES": "1024"}


@pytest.fixture(scope="module")
def tight_process(_real_postgres: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """uvicorn (serving.v2.server) with LIMITS and a bug injected in the stream's request check."""
    port = free_port()
    log = tmp_path_factory.mktemp("tight-web") / "web.log"
    with log.open("wb") as out:
        popen = subprocess.Popen([sys.executable, "-c", FAULTY_SERVER, "--host", "127.0.0.1", "--port", str(port)],
                                 cwd=ROOT, env=child_env(**LIMITS), stdout=out, stderr=subprocess.STDOUT)
    _wait_for(lambda: port_open(port), popen, log, "uvicorn")
    process = Process(popen, log)
    process.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    yield process
    stop(process)


@pytest.fixture
def tight(served: Served, tight_process: Process) -> str:
    """The tight web process's URL, once its route cache knows this test's model."""
    url: str = tight_process.url  # type: ignore[attr-defined]
    wait_until_served(url, served.token, "iris", 1)
    return url


def test_a_socket_that_sends_no_token_is_closed_after_the_auth_timeout(tight: str) -> None:
    message = f"no token within 1 s: {HOW}"
    with connect(ws_url(tight)) as socket:
        started = time.monotonic()
        assert refusal(socket) == ({"error": message, "status": 401}, 4401, message)
    assert time.monotonic() - started >= 1.0  # not before its timeout (the recv's own timeout guards a hang)


def test_streams_beyond_the_process_limit_are_refused_with_4429(served: Served, tight: str) -> None:
    message = "this server has 2 streams open, its limit; retry later"
    with open_stream(tight, served.token, "header"), open_stream(tight, served.token, "first message"):
        with connect(ws_url(tight), additional_headers=bearer(served.token)) as third:
            assert refusal(third) == ({"error": message, "status": 429}, 4429, message)
    # Closed streams give their places back.
    deadline = time.monotonic() + 10
    while True:
        with connect(ws_url(tight), additional_headers=bearer(served.token)) as socket:
            socket.send(json.dumps(request("again")))
            reply = json.loads(socket.recv(timeout=30))
        if reply.get("status") != 429:
            break
        assert time.monotonic() < deadline, reply
        time.sleep(0.1)
    assert reply["id"] == "again" and "outputs" in reply


def test_a_message_over_the_size_limit_closes_the_socket_with_1009(served: Served, tight: str) -> None:
    # ws_max_size is PADDOCK_MAX_INFER_BYTES (1024 here) + 64 KiB for what a message adds.
    limit = 1024 + 64 * 1024
    with open_stream(tight, served.token, "header") as socket:
        socket.send(json.dumps({**request("big"), "padding": "x" * limit}))
        code, reason = closing(socket)
    assert code == 1009 and str(limit) in reason
    with open_stream(tight, served.token, "header"):  # the process goes on serving
        pass


def test_a_bug_answers_its_request_with_500_counts_it_and_logs_it_once(served: Served, tight: str,
                                                                        tight_process: Process) -> None:
    request_id = f"boom-{uuid.uuid4().hex[:8]}"
    with open_stream(tight, served.token, "header") as socket:
        socket.send(json.dumps(request(request_id)))
        reply = json.loads(socket.recv(timeout=30))
        reference = re.fullmatch(r"internal error \(request id ([0-9a-f]{16})\)", reply["error"])
        assert reference is not None and reply == {"error": reply["error"], "status": 500, "id": request_id}
        socket.send(json.dumps(request("next")))  # the socket stays open and serving
        assert json.loads(socket.recv(timeout=30))["id"] == "next"
    _, _, text = call(tight, "GET", "/metrics", token=served.token)
    assert re.search(r'paddock_inference_requests_total\{code="500",model="iris",version="1"\} 1\.0',
                     text.decode()), text.decode()[-2000:]
    log = tight_process.output()
    # Once, under the reference the caller got, with the traceback and nothing of it in the reply.
    assert log.count(f"request {request_id!r}, failed unexpectedly (request id {reference[1]})") == 1
    assert log.count("RuntimeError: injected fault") == 1 and "injected fault" not in reply["error"]
    assert "Task exception was never retrieved" not in log


def test_failed_authentications_from_one_address_are_throttled(served: Served, tight: str) -> None:
    """Last on the tight process: its address stays throttled for the rest of the 10 s window."""
    unknown = "pdk_" + "A" * 43  # well formed, no such token: a lookup (then a cached refusal)
    throttled = "too many failed authentications from this address (3 in 10 s); retry later"
    with open_stream(tight, served.token, "header") as working:
        for token in ["pdk_wrong", unknown, unknown]:
            with connect(ws_url(tight), additional_headers=bearer(token)) as socket:
                assert refusal(socket) == ({"error": "invalid token", "status": 401}, 4401, "invalid token")
        with connect(ws_url(tight), additional_headers=bearer("pdk_" + "B" * 43)) as socket:
            assert refusal(socket) == ({"error": throttled, "status": 429}, 4429, throttled)
        _, fresh = create_token(actor=Actor(user=engineer()), user=engineer(), name="fresh", scopes=["predict"])
        with connect(ws_url(tight)) as socket:  # not cached yet: its lookup waits for the window too
            socket.send(json.dumps({"auth": f"Bearer {fresh}"}))
            assert refusal(socket) == ({"error": throttled, "status": 429}, 4429, throttled)
        working.send(json.dumps(request("still")))  # an open stream is not a failed authentication
        assert json.loads(working.recv(timeout=30))["id"] == "still"


# -- the console's live figures (Channels, session auth) -------------------------------------

def session_cookie() -> str:
    client = Client()
    client.force_login(engineer())
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def sign_out(session_key: str) -> None:
    Session.objects.filter(session_key=session_key).delete()


def change_password(session_key: str) -> None:
    """Elsewhere: the session's hash of the password no longer matches (Django signs it out)."""
    get_user_model().objects.filter(username="engineer").update(password=make_password("changed-elsewhere"))


SESSION_ENDED = "your session has ended: sign in again to see live figures"


@pytest.mark.parametrize(("change", "code", "message"), [
    (lambda key: deactivate(), 4401, SESSION_ENDED),
    (sign_out, 4401, SESSION_ENDED),
    (change_password, 4401, SESSION_ENDED),
    (lambda key: remove_from_team(), 4404, "model 'iris' not found"),
])
def test_live_figures_stop_once_the_session_no_longer_allows_them(served: Served, web_process: WebProcess,
                                                                  change: Any, code: int, message: str) -> None:
    key = session_cookie()
    with connect(ws_url(web_process.url, "/ws/live/models/iris/"),
                 additional_headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={key}",
                                     "Origin": web_process.url}) as socket:
        first = json.loads(socket.recv(timeout=10))
        assert first["model"] == "iris" and "error" not in first
        change(key)
        started = time.monotonic()
        while "status" not in (push := json.loads(socket.recv(timeout=10))):
            assert time.monotonic() - started < 5, "still pushing"
        assert push == {"error": message, "status": code - 4000}
        assert closing(socket) == (code, message)
