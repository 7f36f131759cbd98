"""Websocket streams: /ws/v2/models/{model}[/versions/{n}]/infer. Each text message is a v2
JSON infer request; many may be in flight on one socket; each reply carries its request's `id`
and arrives when it is ready (not necessarily in order). A bad message gets an error message,
never a dropped socket; an unexpected failure gets `{"error": "internal error (request id …)",
"status": 500, "id"}`, is counted as 500 and its traceback logged once under that request id.

The token comes in the `Authorization: Bearer` header or, from a browser (which cannot set headers
on a websocket), as the first message, `{"auth": "Bearer <token>"}`, within
PADDOCK_WS_AUTH_SECONDS. Never in the URL: servers and proxies log URLs, so `?token=` is refused.
The token, its owner and their teams are checked again on every message through the token cache
(a dict lookup, nothing older than TOKEN_CACHE_SECONDS): a refusal answers that message and closes
the socket with the error table's code (4401, 4404...) and the message as the close reason; what
was still in flight on it is dropped. A web process keeps at most PADDOCK_WS_MAX_STREAMS streams
open (then 4429)."""

import asyncio
import re
import time
from typing import Any
from urllib.parse import parse_qs

import orjson
from django.conf import settings

from console.errors import NotFound, PaddockError, QueueFull, Unauthenticated
from serving.v2.auth import Principal, authorize, client_of
from serving.v2.budget import request_bytes
from serving.v2.dataplane import get_dataplane
from serving.v2.http import check_priority, gated, header, internal_error, record, request_limits, tokens
from serving.v2.protocol import encode_response, parse_document, request_from_json
from serving.v2.routes import ModelRoute
from serving.v2.signature import check_request

_PATH = re.compile(r"^/ws/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[0-9]+))?/infer$")
MAX_IN_FLIGHT = 256
AUTH_MESSAGE_MAX_BYTES = 4096  # {"auth": "Bearer pdk_…"} is about 60: a bigger first message is not parsed
CLOSE_REASON_MAX_BYTES = 123  # RFC 6455: a close frame carries at most 125 bytes, 2 of them the code
HOW_TO_AUTHENTICATE = "send 'Authorization: Bearer <token>' or a first message {\"auth\": \"Bearer <token>\"}"
AUTH_REQUIRED = f"authentication required: {HOW_TO_AUTHENTICATE}"
TOKEN_IN_URL = "a token in the URL is refused (URLs get logged): send it in the Authorization header or a first message"

_open_streams = 0  # this process's sockets between accept and close, authenticated or not yet


async def handle(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept a websocket (at most PADDOCK_WS_MAX_STREAMS open), then authenticate and serve it."""
    global _open_streams
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    limit = settings.PADDOCK_WS_MAX_STREAMS
    if _open_streams >= limit:
        await refuse(send, QueueFull(f"this server has {limit} streams open, its limit; retry later"))
        return
    _open_streams += 1
    try:
        await _serve(scope, receive, send)
    finally:
        _open_streams -= 1


async def _serve(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Check the path, the token (header or first message) and the model, then serve the messages."""
    try:
        match = _PATH.match(scope["path"])
        if match is None:
            raise NotFound(f"no stream at {scope['path']}")
        if "token" in parse_qs(scope.get("query_string", b"").decode("latin-1")):
            raise Unauthenticated(TOKEN_IN_URL)
        credential = header(scope, b"authorization")
        if credential is None:
            credential = await first_message_auth(receive)
            if credential is None:  # gone before it authenticated
                return
        digest, principal = await tokens.check(tokens.bearer(credential), client_of(scope))
        name = match["model"]
        number = int(match["version"]) if match["version"] else None
        authorize(principal, await get_dataplane().route(name), name, "predict")
    except PaddockError as error:
        await refuse(send, error)
        return
    except Exception:  # noqa: BLE001 - the database or a bug: say so with the table's 500, log it once
        await refuse(send, internal_error(f"stream {scope['path']!r} at connect"))
        return
    await Stream(send, digest, name, number, scope["headers"]).run(receive)


async def first_message_auth(receive: Any) -> str | None:
    """The `Authorization` value sent as the first message, `{"auth": "Bearer <token>"}`, or
    Unauthenticated (anything else, or nothing within PADDOCK_WS_AUTH_SECONDS); None if the client left."""
    seconds = settings.PADDOCK_WS_AUTH_SECONDS
    try:
        message = await asyncio.wait_for(receive(), seconds)
    except TimeoutError:
        raise Unauthenticated(f"no token within {seconds:g} s: {HOW_TO_AUTHENTICATE}") from None
    if message["type"] == "websocket.disconnect":
        return None
    raw = message.get("text")
    if raw is None:
        raw = message.get("bytes") or b""
    if len(raw) > AUTH_MESSAGE_MAX_BYTES:
        raise Unauthenticated(AUTH_REQUIRED)
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Unauthenticated(AUTH_REQUIRED) from None
    value = document.get("auth") if isinstance(document, dict) else None
    if not isinstance(value, str) or value[:7].lower() != "bearer ":
        raise Unauthenticated(AUTH_REQUIRED)
    return value


def error_reply(error: PaddockError, request_id: str | None = None) -> dict[str, Any]:
    """A refusal as a websocket message: the message, its REST status, and the request's id."""
    reply: dict[str, Any] = {"error": error.message, "status": error.http_status}
    if request_id is not None:
        reply["id"] = request_id
    return reply


def close_reason(message: str) -> str:
    """The message as a close frame's reason: cut to CLOSE_REASON_MAX_BYTES of UTF-8."""
    encoded = message.encode()
    if len(encoded) <= CLOSE_REASON_MAX_BYTES:
        return message
    return encoded[:CLOSE_REASON_MAX_BYTES - 3].decode(errors="ignore") + "..."


async def refuse(send: Any, error: PaddockError, request_id: str | None = None) -> None:
    """Send the refusal as an error message, then close with its kind's code and its message as the reason."""
    await send({"type": "websocket.send", "text": orjson.dumps(error_reply(error, request_id)).decode()})
    await send({"type": "websocket.close", "code": error.row.websocket_close, "reason": close_reason(error.message)})


def request_id_of(raw: str) -> str | None:
    """The `id` of a message that is refused before it is decoded (parsed on that path only)."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    value = document.get("id") if isinstance(document, dict) else None
    return value if isinstance(value, str) else None


class Stream:
    """One socket's requests: each answered in its own task, replies sent as they are ready."""

    def __init__(self, send: Any, digest: str, name: str, number: int | None,
                 headers: list[tuple[bytes, bytes]]) -> None:
        self.send = send
        self.headers = headers  # the connect request's: an A/B header pins the whole socket
        self.digest = digest  # the token's, to ask the token cache again on every message
        self.name = name
        self.number = number
        self.lock = asyncio.Lock()
        self.closed = False
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self, receive: Any) -> None:
        """Read messages until the socket closes: each one's token and model checked again (a
        refusal closes the socket), then answered in its own task (at most MAX_IN_FLIGHT)."""
        dataplane = get_dataplane()
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                raw = message.get("text")
                if raw is None:
                    raw = (message.get("bytes") or b"").decode("utf-8", errors="replace")
                try:
                    principal = await tokens.recheck(self.digest)
                    route = authorize(principal, await dataplane.route(self.name), self.name, "predict")
                except PaddockError as refusal:
                    async with self.lock:
                        self.closed = True
                        await refuse(self.send, refusal, request_id_of(raw))
                    return
                except Exception:  # noqa: BLE001 - the database or a bug: answer this one, keep the socket
                    request_id = request_id_of(raw)
                    failure = internal_error(f"stream of model {self.name!r}, checking request {request_id!r},")
                    await self.reply(error_reply(failure, request_id))
                    continue
                if len(self.tasks) >= MAX_IN_FLIGHT:
                    await self.reply(error_reply(QueueFull(
                        f"more than {MAX_IN_FLIGHT} requests in flight on this socket")))
                    continue
                task = asyncio.get_running_loop().create_task(self.answer(raw, route, principal))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        finally:
            for task in self.tasks:
                task.cancel()

    async def answer(self, raw: str, route: ModelRoute, principal: Principal) -> None:
        """Decode, check, enqueue and await one message's request, and reply to it (500 when a bug
        stops it: a request id never goes unanswered while the socket is open)."""
        started = time.perf_counter()
        request_id = version = answer = request = None
        code: int | None = 200
        held = 0  # the bytes charged to the token's budget (given back in finally)
        dataplane = get_dataplane()
        try:
            document = parse_document(raw, "message")
            request_id = document.get("id") if isinstance(document.get("id"), str) else None
            request = request_from_json(document, limits=request_limits())  # REST's: PADDOCK_MAX_*
            del document  # its Python numbers can take 8 times the message: not kept while it waits
            check_priority(principal, request)
            held = dataplane.budget.take(principal.tenant, request_bytes(request, len(raw)))
            version = dataplane.choose_version(route, self.number, request, self.headers)
            rows = check_request(request, version.inputs, version.outputs,
                                 max_batch_size=route.settings["max_batch_size"])
            request.binary_all, request.binary_outputs = False, set()  # text frames carry JSON only
            answer = await dataplane.infer(route, version, request, rows)
            body, _ = encode_response(model_name=route.name, model_version=str(version.number), request=request,
                                      outputs=answer.outputs)
            await self.reply_raw(body.decode())
            dataplane.mirror(route, request, rows, answer, held)
        except PaddockError as error:
            code = error.http_status
            await self.reply(error_reply(error, request_id))
        except asyncio.CancelledError:
            code = None  # the socket closed under it: not an answer to count
            raise
        except Exception:  # noqa: BLE001 - a bug must not leave the request without an answer
            failure = internal_error(f"stream of model {self.name!r}, request {request_id!r},")
            code = failure.http_status
            await self.reply(error_reply(failure, request_id))
        finally:
            dataplane.budget.give_back(principal.tenant, held)
            if code is not None:
                record(dataplane, route, version, code, time.perf_counter() - started, answer,
                       gated(route, self.number, request, code))

    async def reply(self, document: dict[str, Any]) -> None:
        """Send a JSON document as a text message."""
        await self.reply_raw(orjson.dumps(document).decode())

    async def reply_raw(self, text: str) -> None:
        """Send a text message; the lock keeps concurrent replies from interleaving. Once the
        socket is closed, or the client gone (uvicorn's ClientDisconnected), there is no one to tell."""
        async with self.lock:
            if self.closed:
                return
            try:
                await self.send({"type": "websocket.send", "text": text})
            except OSError:
                self.closed = True
