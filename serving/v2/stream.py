"""Websocket streams: /ws/v2/models/{model}[/versions/{n}]/infer. Each text message is a v2
JSON infer request; many may be in flight on one socket; each reply carries its request's `id`
and arrives when it is ready (not necessarily in order). A bad message gets an error message,
never a dropped socket. The token is checked at connect (`Authorization: Bearer` header, or
`?token=` for browsers, which cannot set headers on websockets)."""

import asyncio
import re
import time
from typing import Any
from urllib.parse import parse_qs

import orjson

from console.errors import NotFound, PaddockError, QueueFull
from serving.v2.auth import authorize
from serving.v2.dataplane import get_dataplane
from serving.v2.http import header, record, tokens
from serving.v2.protocol import encode_response, parse_document, request_from_json
from serving.v2.signature import check_request

_PATH = re.compile(r"^/ws/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[0-9]+))?/infer$")
MAX_IN_FLIGHT = 256


async def handle(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept a websocket, check its token and model, then serve its messages until it closes."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    try:
        match = _PATH.match(scope["path"])
        if match is None:
            raise NotFound(f"no stream at {scope['path']}")
        token = header(scope, b"authorization")
        if token is None:
            query = parse_qs(scope.get("query_string", b"").decode())
            token = f"Bearer {query['token'][0]}" if "token" in query else None
        principal = await tokens.authenticate(token)
        name = match["model"]
        number = int(match["version"]) if match["version"] else None
        authorize(principal, await get_dataplane().route(name), name, "predict")
    except PaddockError as error:
        await send({"type": "websocket.send", "text": orjson.dumps(error_reply(error)).decode()})
        await send({"type": "websocket.close", "code": error.row.websocket_close})
        return
    await Stream(send, principal, name, number, scope["headers"]).run(receive)


def error_reply(error: PaddockError, request_id: str | None = None) -> dict[str, Any]:
    """A refusal as a websocket message: the message, its REST status, and the request's id."""
    reply: dict[str, Any] = {"error": error.message, "status": error.http_status}
    if request_id is not None:
        reply["id"] = request_id
    return reply


class Stream:
    """One socket's requests: each answered in its own task, replies sent as they are ready."""

    def __init__(self, send: Any, principal: Any, name: str, number: int | None,
                 headers: list[tuple[bytes, bytes]]) -> None:
        self.send = send
        self.headers = headers  # the connect request's: an A/B header pins the whole socket
        self.principal = principal
        self.name = name
        self.number = number
        self.lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self, receive: Any) -> None:
        """Read messages until the socket closes, each answered in its own task (at most MAX_IN_FLIGHT)."""
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                raw = message.get("text")
                if raw is None:
                    raw = (message.get("bytes") or b"").decode("utf-8", errors="replace")
                if len(self.tasks) >= MAX_IN_FLIGHT:
                    await self.reply(error_reply(QueueFull(
                        f"more than {MAX_IN_FLIGHT} requests in flight on this socket")))
                    continue
                task = asyncio.get_running_loop().create_task(self.answer(raw))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        finally:
            for task in self.tasks:
                task.cancel()

    async def answer(self, raw: str) -> None:
        """Decode, check, route, enqueue and await one message's request, and reply to it."""
        started = time.perf_counter()
        request_id = route = version = answer = None
        code = 200
        dataplane = get_dataplane()
        try:
            document = parse_document(raw, "message")
            request_id = document.get("id") if isinstance(document.get("id"), str) else None
            route = authorize(self.principal, await dataplane.route(self.name), self.name, "predict")
            request = request_from_json(document)
            version = dataplane.choose_version(route, self.number, request, self.headers)
            rows = check_request(request, version.inputs, version.outputs,
                                 max_batch_size=route.settings["max_batch_size"])
            request.binary_all, request.binary_outputs = False, set()  # text frames carry JSON only
            answer = await dataplane.infer(route, version, request, rows)
            body, _ = encode_response(model_name=route.name, model_version=str(version.number), request=request,
                                      outputs=answer.outputs)
            await self.reply_raw(body.decode())
            dataplane.mirror(route, request, rows, answer)
        except PaddockError as error:
            code = error.http_status
            await self.reply(error_reply(error, request_id))
        finally:
            if route is not None:
                record(dataplane, route, version, code, time.perf_counter() - started, answer)

    async def reply(self, document: dict[str, Any]) -> None:
        """Send a JSON document as a text message."""
        await self.reply_raw(orjson.dumps(document).decode())

    async def reply_raw(self, text: str) -> None:
        """Send a text message; the lock keeps concurrent replies from interleaving."""
        async with self.lock:
            await self.send({"type": "websocket.send", "text": text})
