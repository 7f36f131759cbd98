"""A disk that fills up during an upload (issue 21): 507 with the message, and no half-written
version. Each test mounts a small tmpfs (we run as root) as the artifact store (MEDIA_ROOT) or as
the folder uploads are received in (TMPDIR: Django's spooled body, its upload temp files, the
registry's private copy) of a real web process of its own, uploads an artifact bigger than the
space, then checks that no version row, audit event or file was left, and that a small upload
still works. The tmpfs is unmounted at the end."""

import json
import re
import select
import socket
import subprocess
import tempfile
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from console.audit import Actor
from console.errors import STORE_FULL
from console.models import AuditEvent
from console.services import create_token
from registry import services
from registry.models import ModelVersion, RegisteredModel
from tests import models as built
from tests.conftest import PASSWORD, child_env, spawn_web, stop, wait_until

BIG = built.mlp_onnx(inputs=1024, outputs=768)  # 3 MiB of weights: more than the space left
SMALL = built.mlp_onnx(inputs=8, outputs=3, seed=7)  # a few hundred bytes


@contextmanager
def tmpfs(size: str) -> Iterator[Path]:
    """A tmpfs of `size` (mount's syntax: 2m) mounted on a new folder; unmounted and removed after."""
    folder = Path(tempfile.mkdtemp(prefix="paddock-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
        folder.rmdir()


@contextmanager
def web(tmp_path: Path, **env: str) -> Iterator[str]:
    """A web process of its own with these settings; yields its URL."""
    process, url = spawn_web(tmp_path / f"web-{uuid.uuid4().hex[:6]}.log", child_env(**env))
    try:
        yield url
    finally:
        stop(process)


def files_under(folder: Path) -> list[str]:
    """Every file (not folder) below `folder`, relative to it; but hidden ones, which a library of
    the web process writes to TMPDIR on its own (`.ses`) and uploads never are."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*")
                  if not path.is_dir() and not path.name.startswith("."))


def multipart(fields: dict[str, tuple[str, bytes] | str]) -> tuple[str, bytes]:
    """A multipart/form-data body: its Content-Type and bytes (a tuple is a file: name, bytes)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        if isinstance(value, tuple):
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{value[0]}"\r\n'
                         "Content-Type: application/octet-stream\r\n\r\n".encode() + value[1] + b"\r\n")
        else:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(parts) + f"--{boundary}--\r\n".encode()


@dataclass
class Answer:
    """A server's answer: its status, the cookies it set, its body."""

    status: int
    cookies: dict[str, str]
    body: str


def send(url: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Answer:
    """One request over its own socket, writing the body until the server answers or stops reading
    (a refusal that closes the connection leaves the rest unsent), then reading its answer."""
    address = urllib.parse.urlsplit(url)
    sock = socket.create_connection((address.hostname, address.port or 80), timeout=30)
    head = [f"{method} {path} HTTP/1.1", f"Host: {address.netloc}", f"Content-Length: {len(body)}",
            "Connection: close", *[f"{name}: {value}" for name, value in (headers or {}).items()]]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    pending = memoryview(body)
    sock.setblocking(False)
    while pending:
        readable, writable, _ = select.select([sock], [sock], [], 30)
        if readable or not writable:
            break
        try:
            pending = pending[sock.send(pending[:65536]):]
        except (BrokenPipeError, ConnectionResetError):
            break
    sock.settimeout(30)
    raw = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:  # closed with our unread body in its buffer
            break
        if not chunk:
            break
        raw += chunk
    sock.close()
    answer_head, _, answer = raw.partition(b"\r\n\r\n")
    assert answer_head, "no answer before the connection closed"
    cookies = dict(pair.split("=", 1) for pair in re.findall(r"(?im)^set-cookie:\s*([^;\r\n]+)",
                                                               answer_head.decode("latin-1")))
    return Answer(int(answer_head.split()[1]), cookies, answer.decode(errors="replace"))


def upload(url: str, token: str, artifact: bytes) -> tuple[int, str]:
    """An artifact to /api/v1/models/iris/versions/ as a client sends it: status and body."""
    content_type, body = multipart({"artifact": ("model.onnx", artifact)})
    answer = send(url, "POST", "/api/v1/models/iris/versions/", body,
                  {"Authorization": f"Bearer {token}", "Content-Type": content_type})
    return answer.status, answer.body


@pytest.fixture
def iris(transactional_db: Any, cast: dict[str, Any], teams: dict[str, Any],
         celery_worker: Any) -> tuple[RegisteredModel, str]:
    """Model iris of team ml without versions, and a token of its engineer that may upload (the
    session's worker validates what is uploaded: each test waits for it, see below)."""
    actor = Actor(user=cast["engineer"])
    model = services.create_model(actor=actor, name="iris", team=teams["ml"])
    _, raw = create_token(actor=actor, user=cast["engineer"], name="uploader", scopes=["read", "manage"])
    return model, raw


def assert_nothing_kept(model: RegisteredModel, media: Path, tmp: Path, tmp_before: list[str]) -> None:
    """No version row, no version.create audit event, no file in the artifact store, and no file
    in the temporary folder besides those there before the upload (a library's own)."""
    assert not ModelVersion.objects.filter(model=model).exists()
    assert not AuditEvent.objects.filter(action="version.create").exists()
    assert files_under(media) == []
    assert files_under(tmp) == tmp_before


def assert_a_small_upload_works(url: str, token: str, model: RegisteredModel, media: Path) -> None:
    status, body = upload(url, token, SMALL)
    assert status == 201, body
    assert json.loads(body)["number"] == 1  # the failed upload took no number
    assert files_under(media) == ["models/iris/1/model.onnx"]
    assert (media / "models/iris/1/model.onnx").read_bytes() == SMALL
    # The session's worker validates it now (and fails: it reads its own MEDIA_ROOT, not this
    # folder); wait for it to end, or its transaction meets the test's flush in a deadlock.
    wait_until(lambda: ModelVersion.objects.filter(model=model, status__in=["ready", "failed"]).exists(), timeout=60)


# (what fills up, MEDIA_ROOT's size, TMPDIR's size; None: an ordinary folder)
FULL = {
    "the artifact store": ("2m", None),
    "the folder Django spools the request body to": (None, "2m"),
    "the folder Django writes the uploaded file to": (None, "5m"),  # the body's 3 MiB fit, its copy does not
}


@pytest.mark.parametrize("what", list(FULL))
def test_a_full_disk_during_an_upload_answers_507_and_keeps_nothing(
        iris: tuple[RegisteredModel, str], tmp_path: Path, what: str) -> None:
    model, token = iris
    media_size, tmp_size = FULL[what]
    with (tmpfs(media_size) if media_size else _folder(tmp_path / "media")) as media, \
            (tmpfs(tmp_size) if tmp_size else _folder(tmp_path / "tmp")) as tmp, \
            web(tmp_path, MEDIA_ROOT=str(media), TMPDIR=str(tmp)) as url:
        tmp_before = files_under(tmp)
        status, body = upload(url, token, BIG)
        assert (status, json.loads(body)) == (507, {"detail": STORE_FULL})
        assert_nothing_kept(model, media, tmp, tmp_before)
        assert_a_small_upload_works(url, token, model, media)


@contextmanager
def _folder(path: Path) -> Iterator[Path]:
    path.mkdir()
    yield path


def test_the_console_upload_page_answers_507_with_its_fragment(
        iris: tuple[RegisteredModel, str], tmp_path: Path) -> None:
    """The htmx upload form, signed in: the fragment with the message, in a status htmx swaps in."""
    model, _ = iris
    with _folder(tmp_path / "media") as media, tmpfs("5m") as tmp, \
            web(tmp_path, MEDIA_ROOT=str(media), TMPDIR=str(tmp)) as url:
        cookies = sign_in(url, "engineer")
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()), "X-CSRFToken": cookies["csrftoken"],
                   "HX-Request": "true"}

        def upload_page(artifact: bytes) -> Answer:
            content_type, body = multipart({"artifact": ("model.onnx", artifact), "format": "", "description": ""})
            return send(url, "POST", "/models/iris/upload/", body, {**headers, "Content-Type": content_type})

        tmp_before = files_under(tmp)
        refused = upload_page(BIG)
        assert (refused.status, refused.body.strip()) == (507, f'<p class="error" id="service-error">{STORE_FULL}</p>')
        assert_nothing_kept(model, media, tmp, tmp_before)
        uploaded = upload_page(SMALL)
        assert uploaded.status == 200 and "Uploaded as" in uploaded.body, uploaded.body
        assert files_under(media) == ["models/iris/1/model.onnx"]


def sign_in(url: str, username: str) -> dict[str, str]:
    """The cookies (csrftoken, sessionid) of a console session signed in through the login form."""
    page = send(url, "GET", "/login/")
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
    assert csrf is not None, page.body[:300]
    form = urllib.parse.urlencode({"username": username, "password": PASSWORD, "csrfmiddlewaretoken": csrf[1]})
    signed = send(url, "POST", "/login/", form.encode(), {"Cookie": f"csrftoken={page.cookies['csrftoken']}",
                                                          "Content-Type": "application/x-www-form-urlencoded"})
    assert signed.status == 302 and "sessionid" in signed.cookies, signed
    return {**page.cookies, **signed.cookies}


def test_on_make_run_a_full_artifact_store_answers_507_and_the_demo_model_serves_on(tmp_path: Path) -> None:
    """`make run` with its artifact store (MEDIA_ROOT) on a 2 MiB disk: the demo model fits, a
    3 MiB upload does not. 507 with the message, no version and no file kept, inference unharmed;
    a small upload then takes the next number."""
    from tests.reliability.stack import runstack

    with tmpfs("2m") as media, runstack(tmp_path, "predict", "read", "manage", MEDIA_ROOT=str(media)) as stack:
        stack.serving()
        before = files_under(media)
        content_type, body = multipart({"artifact": ("model.onnx", BIG)})
        answer = send(stack.url, "POST", "/api/v1/models/demo-mlp/versions/", body,
                      {"Authorization": f"Bearer {stack.token}", "Content-Type": content_type})
        assert (answer.status, json.loads(answer.body)) == (507, {"detail": STORE_FULL})
        assert files_under(media) == before
        assert [v["number"] for v in stack.api("GET", "/api/v1/models/demo-mlp/versions/")] == [1]
        stack.serving()  # the demo model still answers
        assert stack.upload("demo-mlp", SMALL) == 2
