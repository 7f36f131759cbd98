"""Issue 20, item 4: request bodies are refused before Django reads them. An unauthenticated body
is answered before a byte of it is read; an over-limit one as soon as it passes the limit,
declared or streamed in chunks. Each hostile body goes to a real uvicorn over a raw socket; the
tests watch its memory, its open files, the temp folder and the data plane while it streams."""

import contextlib
import json
import os
import re
import select
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client

from console.audit import Actor
from console.models import AuditEvent
from console.services import create_token
from registry import services
from registry.models import ModelVersion
from tests import models as built
from tests.conftest import PASSWORD, child_env, spawn_web, stop
from tests.security.conftest import WebProcess, settle_validations

MB = 1024 * 1024
HOSTILE_BYTES = 200 * MB  # what each hostile client means to send; it is cut off long before
CHUNK = 64 * 1024
SMALL_UPLOAD_LIMIT = 1 * MB  # the limit of this module's own web process (`small`)
NO_CREDENTIALS = {"detail": "authentication required: send 'Authorization: Bearer <token>'"}
NO_SESSION = b"sign in first: this page takes posts from a signed-in session only\n"


@dataclass
class Answer:
    """What a streaming client got back, and how much of its body it sent before that."""

    status: int
    headers: dict[str, str]
    body: bytes
    sent: int
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)


def stream(base: str, path: str, *, headers: dict[str, str] | None = None, total: int = HOSTILE_BYTES,
           declared: bool = False, while_open: Any = None) -> Answer:
    """POST `total` bytes to `path` over one socket: chunked (or with a Content-Length of `total`
    when `declared`), sending until the server answers or stops reading. `while_open` checks what
    happens meanwhile: called once, after 16 MB of body or when the server answers, whichever is
    first, and before the answer is read."""
    url = urlsplit(base)
    started = time.monotonic()
    sock = socket.create_connection((url.hostname, url.port or 80), timeout=10)
    lines = [f"POST {path} HTTP/1.1", f"Host: {url.hostname}:{url.port}", "Content-Type: application/octet-stream"]
    lines.append(f"Content-Length: {total}" if declared else "Transfer-Encoding: chunked")
    lines.extend(f"{name}: {value}" for name, value in (headers or {}).items())
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    piece = b"\x00" * CHUNK if declared else f"{CHUNK:x}\r\n".encode() + b"\x00" * CHUNK + b"\r\n"
    sent, pending = 0, memoryview(b"")
    sock.setblocking(False)
    while sent < total:
        readable, writable, _ = select.select([sock], [sock], [], 10)
        if readable or not writable:  # answered, or the server stopped reading (its window is full)
            break
        if not pending:
            pending = memoryview(piece)
        try:
            count = sock.send(pending)
        except (BrokenPipeError, ConnectionResetError):
            break
        pending = pending[count:]
        sent += count * CHUNK // len(piece)  # body bytes, not chunk framing
        if while_open is not None and sent >= 16 * MB:  # well past where Django's spool moves to disk (2.5 MB)
            while_open, check = None, while_open
            check()
    if while_open is not None:
        while_open()
    sock.settimeout(30)
    if sent >= total and not declared:
        sock.sendall(b"0\r\n\r\n")  # all of it was taken: end the chunked body
    raw = read_answer(sock)
    sock.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    answer_headers = {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)}
    return Answer(int(status_line.split()[1]), answer_headers, body, sent, time.monotonic() - started)


def read_answer(sock: socket.socket) -> bytes:
    """The response's bytes: up to its Content-Length, or until the server closes."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:  # the server closed with our unread body in its buffer
            break
        if not chunk:
            break
        data += chunk
        head, found, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if found and length and len(body) >= int(length.group(1)):
            break
    assert data, "no answer before the connection closed"
    return data


@dataclass
class Watch:
    """Samples a web process while a hostile body streams: its peak RSS, any file it holds open in
    the temp folder, and that the data plane's /v2/health/live answers meanwhile."""

    web: WebProcess
    peak_rss_kb: int = 0
    temp_files: set[str] = field(default_factory=set)
    health_answers: int = 0

    def sample(self) -> None:
        self.peak_rss_kb = max(self.peak_rss_kb, self.web.memory_kb("VmRSS"))
        self.temp_files |= open_temp_files(self.web.pid)
        with urllib.request.urlopen(f"{self.web.url}/v2/health/live", timeout=5) as response:
            assert response.status == 200 and json.loads(response.read()) == {"live": True}
        self.health_answers += 1


def open_temp_files(pid: int, folder: str | Path | None = None) -> set[str]:
    """The files in the temp folder the process holds open, an unlinked spool file (`#123 (deleted)`) too."""
    folder = str(folder or tempfile.gettempdir())
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if os.path.dirname(target) == folder:
            found.add(target)
    return found


def upload_files() -> set[str]:
    """Django's multipart temp files (`tmp….upload…`) in the temp folder."""
    return {entry.name for entry in Path(tempfile.gettempdir()).iterdir() if ".upload" in entry.name}


@pytest.fixture
def iris(transactional_db: Any, cast: dict[str, Any], teams: dict[str, Any]) -> Any:
    return services.create_model(actor=Actor(user=cast["engineer"]), name="iris", team=teams["ml"])


@pytest.fixture
def watched(web_process: WebProcess, iris: Any) -> Iterator[Watch]:
    """A warmed-up web process under watch; after the test: RSS grew by under 8 MB, no file was
    opened in the temp folder or left there, and /v2/health/live answered while it streamed."""
    for path in ("/api/v1/models/iris/versions/", "/models/"):  # warm up the guard's paths
        # Refused and closed just as the body's end went out (a reset): warmed up all the same.
        with contextlib.suppress(ConnectionResetError):
            stream(web_process.url, path, total=MB)
    before_rss, before_files = web_process.memory_kb("VmRSS"), upload_files()
    watch = Watch(web_process)
    yield watch
    watch.sample()
    assert watch.peak_rss_kb - before_rss < 8 * 1024, (before_rss, watch.peak_rss_kb)
    assert watch.temp_files == set()
    assert upload_files() - before_files == set()
    assert watch.health_answers >= 1  # the data plane answered while the hostile body was being sent


def assert_cut_off(answer: Answer) -> None:
    """Answered with the connection closed long before the hostile body was sent: the server
    stopped reading after what the socket buffers hold."""
    assert answer.sent < 32 * MB, answer.sent  # socket buffers only: the server stopped reading
    assert answer.headers["connection"] == "close"


def test_an_unauthenticated_chunked_upload_to_the_api_is_refused_before_its_body_is_read(watched: Watch) -> None:
    answer = stream(watched.web.url, "/api/v1/models/iris/versions/", while_open=watched.sample)
    assert answer.status == 401
    assert answer.json() == NO_CREDENTIALS
    assert answer.headers["www-authenticate"] == 'Bearer realm="paddock"'
    assert_cut_off(answer)
    assert not ModelVersion.objects.exists() and not AuditEvent.objects.filter(action__startswith="version").exists()


def test_an_unauthenticated_declared_upload_to_the_api_is_refused_before_its_body_is_read(watched: Watch) -> None:
    answer = stream(watched.web.url, "/api/v1/models/iris/versions/", declared=True, while_open=watched.sample)
    assert answer.status == 401
    assert answer.json() == NO_CREDENTIALS
    assert_cut_off(answer)


def test_an_unauthenticated_chunked_post_to_a_console_page_is_refused_before_its_body_is_read(
        watched: Watch) -> None:
    for path in ("/models/", "/models/iris/upload/"):
        answer = stream(watched.web.url, path, while_open=watched.sample)
        assert answer.status == 403
        assert answer.headers["content-type"] == "text/plain; charset=utf-8"
        assert answer.body == NO_SESSION
        assert_cut_off(answer)


def test_an_api_body_over_the_default_limit_is_refused_as_it_streams(watched: Watch, cast: dict[str, Any]) -> None:
    _, raw = create_token(actor=Actor.system("tests"), user=cast["engineer"], name="t", scopes=["read", "manage"])
    bearer = {"Authorization": f"Bearer {raw}"}
    answer = stream(watched.web.url, "/api/v1/models/", headers=bearer, while_open=watched.sample)
    assert answer.status == 413
    assert answer.json() == {"detail": "request body is over the limit of 1048576 bytes"}
    assert_cut_off(answer)
    answer = stream(watched.web.url, "/api/v1/models/", headers=bearer, declared=True)
    assert answer.status == 413
    assert answer.json() == {"detail": f"request body is {HOSTILE_BYTES} bytes; the limit is 1048576 bytes"}
    assert_cut_off(answer)


def test_a_made_up_token_or_session_cannot_have_a_body_spooled(watched: Watch) -> None:
    """Present but not valid: refused before the body is read, not after Django spooled it."""
    made_up = {"Authorization": "Bearer pdk_" + "A" * 43}  # well-formed, unknown
    answer = stream(watched.web.url, "/api/v1/models/iris/versions/", headers=made_up, while_open=watched.sample)
    assert (answer.status, answer.json()) == (401, {"detail": "invalid token"})
    assert_cut_off(answer)
    stale = {"Cookie": "sessionid=not-a-session-of-this-server"}
    answer = stream(watched.web.url, "/api/v1/models/iris/versions/", headers=stale, while_open=watched.sample)
    assert (answer.status, answer.json()) == (401, NO_CREDENTIALS)
    assert_cut_off(answer)
    for path in ("/models/", "/models/iris/upload/"):
        answer = stream(watched.web.url, path, headers=stale, while_open=watched.sample)
        assert (answer.status, answer.body) == (403, NO_SESSION)
        assert_cut_off(answer)
    assert not ModelVersion.objects.exists()


def test_a_bad_token_is_refused_by_drf_within_the_default_limit(web_process: WebProcess, iris: Any) -> None:
    body = json.dumps({"name": "x", "team": "ml"}).encode()
    request = urllib.request.Request(f"{web_process.url}/api/v1/models/", data=body, method="POST", headers={
        "Authorization": "Bearer pdk_not-a-real-token", "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401
    assert json.loads(refused.value.read()) == {"detail": "invalid token"}


def test_the_data_plane_keeps_its_own_answers(web_process: WebProcess, iris: Any) -> None:
    answer = stream(web_process.url, "/v2/models/iris/infer", total=MB)
    assert answer.status == 401
    assert answer.json() == {"error": "authentication required: send 'Authorization: Bearer <token>'"}


# An authenticated body over the upload limit: this module's own web process, with a 1 MB upload
# limit (sending 512 MB to reach the default would be slow) and its own temp folder.

@dataclass
class Small:
    """This module's own web process, its temp folder and what was in it once the process started."""

    web: WebProcess
    temp: Path
    started_with: set[Path]

    def assert_nothing_stored(self) -> None:
        """No file left in its temp folder, no version row, no version event."""
        assert set(self.temp.iterdir()) == self.started_with
        assert not ModelVersion.objects.exists()
        assert not AuditEvent.objects.filter(action__startswith="version").exists()


@pytest.fixture(scope="module")
def small(_real_postgres: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Small]:
    folder = tmp_path_factory.mktemp("small-web")
    temp = folder / "tmp"
    temp.mkdir()
    env = child_env(PADDOCK_MAX_UPLOAD_BYTES=str(SMALL_UPLOAD_LIMIT), TMPDIR=str(temp))
    process, url = spawn_web(folder / "web.log", env=env)
    yield Small(WebProcess(process, url), temp, set(temp.iterdir()))  # tests/settings.py makes folders there
    stop(process)


@pytest.fixture
def engineer_token(iris: Any, cast: dict[str, Any]) -> dict[str, str]:
    _, raw = create_token(actor=Actor.system("tests"), user=cast["engineer"], name="up", scopes=["read", "manage"])
    return {"Authorization": f"Bearer {raw}"}


def test_an_authenticated_upload_declared_over_the_limit_is_refused_before_its_body_is_read(
        small: Small, engineer_token: dict[str, str]) -> None:
    web = small.web
    answer = stream(web.url, "/api/v1/models/iris/versions/", headers=engineer_token, declared=True)
    assert answer.status == 413
    assert answer.json() == {"detail": f"upload is {HOSTILE_BYTES} bytes; the limit is {SMALL_UPLOAD_LIMIT} bytes"}
    assert_cut_off(answer)
    small.assert_nothing_stored()


def test_an_authenticated_chunked_upload_over_the_limit_is_refused_as_it_passes_it(
        small: Small, engineer_token: dict[str, str]) -> None:
    web = small.web
    held: set[str] = set()
    answer = stream(web.url, "/api/v1/models/iris/versions/", headers=engineer_token,
                    while_open=lambda: held.update(open_temp_files(web.pid, small.temp)))
    assert answer.status == 413
    assert answer.json() == {"detail": f"upload is over the limit of {SMALL_UPLOAD_LIMIT} bytes"}
    assert_cut_off(answer)
    assert held == set()
    small.assert_nothing_stored()


def test_a_signed_in_upload_page_post_over_the_limit_is_refused_in_plain_text(
        small: Small, iris: Any, cast: dict[str, Any]) -> None:
    web = small.web
    browser = Client()
    browser.force_login(cast["engineer"])
    cookie = {"Cookie": f"sessionid={browser.cookies['sessionid'].value}"}
    answer = stream(web.url, "/models/iris/upload/", headers=cookie)
    assert answer.status == 413
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert answer.body == f"upload is over the limit of {SMALL_UPLOAD_LIMIT} bytes\n".encode()
    assert_cut_off(answer)
    small.assert_nothing_stored()


def test_an_upload_within_the_limit_still_goes_through(small: Small, engineer_token: dict[str, str],
                                                       celery_worker: Any) -> None:
    web = small.web
    boundary = "paddock-test-boundary"
    artifact = built.mlp_onnx(seed=1)
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"artifact\"; filename=\"m.onnx\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + artifact + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{web.url}/api/v1/models/iris/versions/", data=body, method="POST", headers={
        **engineer_token, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201
        assert json.loads(response.read())["number"] == 1
    settle_validations()  # the worker validates it: not while the tables are emptied after the test


def test_the_login_form_still_posts_without_a_session(small: Small, iris: Any) -> None:
    web = small.web
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    with opener.open(f"{web.url}/login/", timeout=10) as page:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.read().decode())
    assert token is not None
    form = f"username=engineer&password={PASSWORD}&csrfmiddlewaretoken={token.group(1)}".encode()
    with opener.open(urllib.request.Request(f"{web.url}/login/", data=form, method="POST"), timeout=10) as signed_in:
        assert signed_in.status == 200 and urlsplit(signed_in.url).path == "/models/"
