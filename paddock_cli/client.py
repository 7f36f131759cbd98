"""The CLI's HTTP calls to the management API (docs/api.md), one method per call; every refusal
becomes an ApiError carrying the server's own message and status."""

import io
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import requests

API = "/api/v1"
# Seconds to connect, then to wait for an answer; an upload's answer comes after the server has
# stored and inspected the whole file, so it may wait longer.
TIMEOUT = (10.0, 60.0)
UPLOAD_TIMEOUT = (10.0, 600.0)
PAGE = 1000  # the API's ceiling on `limit`


class ApiError(Exception):
    """A call that did not succeed: the server's message (or why it could not be reached) and
    the HTTP status when there was an answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message, self.status = message, status


def error_message(response: requests.Response) -> str:
    """What the server said about a refusal: `detail` (management API), `error` (data plane),
    DRF's field errors as `field: message`, else the status line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return body["detail"]
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    if isinstance(body, dict | list) and body:
        return "; ".join(_field_errors(body))
    return f"HTTP {response.status_code} {response.reason} from {response.url}"


def _field_errors(errors: Any, field: str = "") -> Iterator[str]:
    """DRF's validation errors, flattened: {"steps": {"0": ["A valid number is required."]}} gives
    'steps.0: A valid number is required.'"""
    if isinstance(errors, dict):
        for key, value in errors.items():
            name = "" if key == "non_field_errors" else f"{field}.{key}" if field else str(key)
            yield from _field_errors(value, name)
    elif isinstance(errors, list):
        for item in errors:
            yield from _field_errors(item, field)
    else:
        yield f"{field}: {errors}" if field else str(errors)


def _name(value: str | int) -> str:
    return quote(str(value), safe="")


class Multipart:
    """A multipart/form-data body read from disk while it is sent, never held in memory: text
    fields, then each file in chunks, `on_sent(n)` called for each chunk of a file (the progress
    bar). requests sends an object with read() and len() as it is, with its Content-Length."""

    def __init__(self, fields: dict[str, str], files: list[tuple[str, Path]],
                 on_sent: Callable[[int], None] = lambda n: None) -> None:
        boundary = secrets.token_hex(16)
        self.content_type = f"multipart/form-data; boundary={boundary}"
        self.on_sent = on_sent
        self._parts: list[tuple[BinaryIO, bool]] = []  # (stream, whether it counts as file bytes)
        length = 0
        for name, value in fields.items():
            length += self._add(io.BytesIO(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()), False)
        for name, path in files:
            filename = path.name.replace('"', "%22").replace("\r", "").replace("\n", "")
            length += self._add(io.BytesIO(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n".encode()), False)
            length += self._add(path.open("rb"), True)
            length += self._add(io.BytesIO(b"\r\n"), False)
        self.length = length + self._add(io.BytesIO(f"--{boundary}--\r\n".encode()), False)

    def _add(self, stream: BinaryIO, counted: bool) -> int:
        self._parts.append((stream, counted))
        size = stream.seek(0, io.SEEK_END)
        stream.seek(0)
        return size

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes of the body (all that is left when negative); b'' at its end."""
        chunks: list[bytes] = []
        wanted = size if size >= 0 else self.length
        while self._parts and wanted > 0:
            stream, counted = self._parts[0]
            chunk = stream.read(wanted)
            if not chunk:
                stream.close()
                self._parts.pop(0)
                continue
            if counted:
                self.on_sent(len(chunk))
            chunks.append(chunk)
            wanted -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        """Close the files not yet read to their end."""
        for stream, _ in self._parts:
            stream.close()
        self._parts = []


class Client:
    """The management API of one server, called with one token."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json",
                                     "User-Agent": "paddock-cli"})

    def call(self, method: str, path: str, *, timeout: tuple[float, float] = TIMEOUT,
             **options: Any) -> requests.Response:
        """One request; ApiError for an error status, a redirect or a server that cannot be reached."""
        try:
            # No redirects: a POST redirected (http to https, say) comes back as a GET, which
            # would answer 200 for an upload never made.
            response = self.session.request(method, self.url + path, timeout=timeout, allow_redirects=False,
                                            **options)
        except requests.Timeout:
            raise ApiError(f"{self.url} did not answer within {timeout[1]:g} s") from None
        except requests.ConnectionError as exc:
            raise ApiError(f"cannot reach {self.url}: {_reason(exc)}") from None
        except requests.RequestException as exc:
            raise ApiError(f"request to {self.url} failed: {exc}") from None
        if response.is_redirect:
            raise ApiError(f"{self.url}{path} redirects to {response.headers.get('Location')}: "
                           "log in with the server's own URL", response.status_code)
        if response.status_code >= 400:
            raise ApiError(error_message(response), response.status_code)
        return response

    def json(self, method: str, path: str, **options: Any) -> Any:
        """A call's JSON answer (None for an empty one)."""
        response = self.call(method, path, **options)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"{self.url}{path} did not answer JSON (is {self.url} a Paddock server?)",
                           response.status_code) from None

    def whoami(self) -> dict[str, Any]:
        """Who the token belongs to: username, staff or not, teams and roles, the token itself."""
        return dict(self.json("GET", f"{API}/whoami/"))

    # -- registry --------------------------------------------------------------------------

    def check(self) -> None:
        """Whether the token is good for reading the API: the server's refusal otherwise."""
        self.json("GET", f"{API}/models/", params={"limit": 1})

    def models(self, query: str = "", tag: str = "") -> list[dict[str, Any]]:
        """Every model the token sees (all pages), searched by name or description and tag."""
        found: list[dict[str, Any]] = []
        while True:
            page = self.json("GET", f"{API}/models/", params={"q": query, "tag": tag, "limit": PAGE,
                                                               "offset": len(found)})
            found += page["results"]
            if not page["results"] or len(found) >= page["count"]:
                return found

    def versions(self, model: str) -> list[dict[str, Any]]:
        """The model's versions, newest first."""
        return list(self.json("GET", f"{API}/models/{_name(model)}/versions/"))

    def version(self, model: str, number: int) -> dict[str, Any]:
        """One version with its status and validation report."""
        return dict(self.json("GET", f"{API}/models/{_name(model)}/versions/{number}/"))

    def upload(self, model: str, path: Path, *, fields: dict[str, str], external_data: list[Path],
               on_sent: Callable[[int], None]) -> tuple[dict[str, Any], bool]:
        """Upload `path` as a new version, streamed; the version and whether it is new (the same
        bytes uploaded before return that version)."""
        body = Multipart(fields, [("artifact", path), *[("external_data", extra) for extra in external_data]],
                         on_sent)
        try:
            response = self.call("POST", f"{API}/models/{_name(model)}/versions/", data=body,
                                 headers={"Content-Type": body.content_type}, timeout=UPLOAD_TIMEOUT)
        finally:
            body.close()
        return dict(response.json()), response.headers.get("X-Paddock-Duplicate") != "true"

    def set_alias(self, model: str, alias: str, version: int) -> dict[str, Any]:
        """Point the alias at the version (created when missing)."""
        return dict(self.json("PUT", f"{API}/models/{_name(model)}/aliases/{_name(alias)}",
                              json={"version": version}))

    # -- serving ---------------------------------------------------------------------------

    def deployment(self, model: str) -> dict[str, Any]:
        """The model's serving settings."""
        return dict(self.json("GET", f"{API}/deployments/{_name(model)}/"))

    def rollouts(self, model: str) -> list[dict[str, Any]]:
        """The model's latest 50 rollouts, newest first."""
        return list(self.json("GET", f"{API}/models/{_name(model)}/rollouts/"))

    def rollout(self, model: str, rollout_id: int) -> dict[str, Any]:
        """One rollout with its timeline."""
        return dict(self.json("GET", f"{API}/models/{_name(model)}/rollouts/{rollout_id}/"))

    def start_rollout(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        """Start a rollout: `candidate`, `strategy` and its options (docs/rollouts.md)."""
        return dict(self.json("POST", f"{API}/models/{_name(model)}/rollouts/", json=body))

    def control_rollout(self, model: str, rollout_id: int, action: str, reason: str) -> dict[str, Any]:
        """pause, resume, approve, promote or rollback a rollout."""
        return dict(self.json("POST", f"{API}/models/{_name(model)}/rollouts/{rollout_id}/{_name(action)}/",
                              json={"reason": reason}))

    def metrics(self, model: str, seconds: int) -> dict[str, Any]:
        """The model's live figures per version over the last `seconds`."""
        return dict(self.json("GET", f"{API}/models/{_name(model)}/metrics/", params={"seconds": seconds}))


def _reason(exc: requests.ConnectionError) -> str:
    """The operating system's words for a connection failure ('Connection refused', 'Name or
    service not known'), not urllib3's wrapping of them; the whole text when there are none."""
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    return found.group(1).strip() if found else str(exc)
