"""The data plane's lean ASGI routes, dispatched by console/asgi.py before Django's request
cycle: /v2/... (KServe v2 REST) and /metrics. Health, metadata and infer only; no middleware.
Errors are v2's {"error": message} with the status of their kind (console/errors.py's table);
an unexpected exception is answered 500 `internal error (request id …)`, counted as 500, and its
traceback logged once under that id (`internal_error`)."""

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from console.errors import (
    Forbidden,
    InternalError,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    PaddockError,
    PayloadTooLarge,
    ServiceUnavailable,
)
from serving import metrics
from serving.v2.auth import Principal, TokenCache, authorize, client_of, visible_model_names
from serving.v2.budget import request_bytes
from serving.v2.dataplane import get_dataplane
from serving.v2.outage import DATABASE_DOWN, UNAVAILABLE
from serving.v2.protocol import InferRequest, decode_request, encode_response, error_body
from serving.v2.routes import PLATFORMS
from serving.v2.signature import Limits, check_request

Send = Callable[[Mapping[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

_MODEL = re.compile(r"^/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[0-9]+))?(?P<action>/ready|/infer)?$")
SERVER_METADATA = orjson.dumps({"name": "paddock", "version": "0.1.0", "extensions": ["binary_tensor_data"]})
JSON = b"application/json"

tokens = TokenCache()
_collector_registered = False
_limits: Limits | None = None
logger = logging.getLogger(__name__)


async def respond(send: Send, status: int, body: bytes, content_type: bytes = JSON,
                  extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send one whole HTTP response."""
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def respond_error(send: Send, error: PaddockError, version: Any = None) -> None:
    """An error as v2's `{"error": message}` with its kind's status and headers."""
    extra = error.row.headers()
    if version is not None:  # the version chosen for the request, which is the one that failed
        extra.append((b"x-paddock-version", str(version.number).encode()))
    await respond(send, error.http_status, error_body(error.message), extra=extra)


def internal_error(what: str) -> InternalError:
    """Call in `except Exception:`. Logs the traceback once, under a new request id, and returns
    the error the caller gets: 500 with that id only, nothing of the exception (paths, values)."""
    request_id = uuid.uuid4().hex[:16]
    logger.exception("%s failed unexpectedly (request id %s)", what, request_id)
    return InternalError(f"internal error (request id {request_id})")


def request_limits() -> Limits:
    """What one request may ask of this process (settings PADDOCK_MAX_*), for decoding it. Read
    once (making it per request cost 1.9 µs), again after a test overrides a setting."""
    global _limits
    if _limits is None:
        _limits = Limits(max_bytes=settings.PADDOCK_MAX_INFER_BYTES, max_rank=settings.PADDOCK_MAX_TENSOR_RANK,
                         max_timeout_us=settings.PADDOCK_MAX_INFER_TIMEOUT_MS * 1000,
                         max_priority=settings.PADDOCK_MAX_PRIORITY)
    return _limits


@receiver(setting_changed)
def _forget_limits(*, setting: str, **_: Any) -> None:
    global _limits
    if setting.startswith("PADDOCK_MAX_"):
        _limits = None


def whole_number(value: str) -> int | None:
    """A header's value as a count of bytes, or None. ASCII digits only ("²".isdigit() is true
    and int() refuses it), and at most 18 of them (int() of thousands is slow, then refused)."""
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None


def header(scope: dict[str, Any], name: bytes) -> str | None:
    """A request header's value (the first with that name), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def read_body(scope: dict[str, Any], receive: Receive) -> bytes:
    """The whole body, refused with 413 as soon as it passes the limit (declared or streamed)."""
    limit = settings.PADDOCK_MAX_INFER_BYTES
    declared = header(scope, b"content-length")  # uvicorn has refused a malformed one already
    if declared is not None and (whole_number(declared) or 0) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit} bytes")
    chunks = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def handle(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Route one HTTP request of the data plane: health, server and model metadata, readiness, infer."""
    path, method = scope["path"], scope["method"]
    try:
        if path == "/v2/health/live":
            return await respond(send, 200, b'{"live":true}')
        if path == "/v2/health/ready":
            ready = await get_dataplane().redis_ready()
            return await respond(send, 200 if ready else 503, orjson.dumps({"ready": ready}))
        if path == "/metrics":
            return await metrics_page(scope, send)
        principal = await tokens.authenticate(header(scope, b"authorization"), client_of(scope))
        if path in ("/v2", "/v2/"):
            return await respond(send, 200, SERVER_METADATA)
        match = _MODEL.match(path)
        if match is None:
            raise NotFound(f"no route for {method} {path}")
        name, number, action = match["model"], match["version"], match["action"]
        version_number = int(number) if number else None
        dataplane = get_dataplane()
        if action == "/infer":
            if method != "POST":
                raise MethodNotAllowed("use POST for infer")
            route = authorize(principal, await dataplane.route(name), name, "predict")
            return await infer(scope, receive, send, route, version_number, principal)
        route = authorize(principal, await dataplane.route(name), name, "predict" if
                          principal.has_scope("predict") else "read")
        if action == "/ready":
            version = dataplane.pick_version(route, version_number)
            ready = await dataplane.holder_count(version) > 0
            body = orjson.dumps({"name": name, "version": str(version.number), "ready": ready})
            return await respond(send, 200 if ready else 503, body)
        return await respond(send, 200, model_metadata(route, version_number))
    except PaddockError as error:
        await respond_error(send, error)
    except DATABASE_DOWN:  # /metrics' list of models a token may see (routes and tokens have their last good copy)
        await respond_error(send, ServiceUnavailable(UNAVAILABLE))
    except Exception:  # noqa: BLE001 - a bug answers v2's 500, not uvicorn's plain text
        await respond_error(send, internal_error(f"{method} {path!r}"))


def model_metadata(route: Any, number: int | None) -> bytes:
    """The v2 model metadata: versions that serve, and the chosen version's platform and signature."""
    chosen = number if number is not None else route.active
    version = route.versions.get(chosen) if chosen is not None else None
    if version is None:
        if number is not None:
            raise NotFound(f"model '{route.name}' has no version {number}")
        version = next(iter(sorted(route.versions.values(), key=lambda v: -v.number)), None)
    document: dict[str, Any] = {"name": route.name, "versions": [str(n) for n in route.ready_numbers]}
    if version is not None:
        document.update(platform=PLATFORMS.get(version.format, version.format), inputs=version.inputs,
                        outputs=version.outputs)
    return orjson.dumps(document)


async def infer(scope: dict[str, Any], receive: Receive, send: Send, route: Any, number: int | None,
                principal: Principal) -> None:
    """Decode, check, route, enqueue and await one REST infer request, and answer it."""
    started = time.perf_counter()
    dataplane = get_dataplane()
    in_flight = metrics.in_flight(route.name)
    in_flight.inc()
    code, version, answer, request = 200, None, None, None
    tenant, held = "", 0  # the token's budget key and the bytes charged to it (given back in finally)
    try:
        body = await read_body(scope, receive)
        length = header(scope, b"inference-header-content-length")
        json_length = None if length is None else whole_number(length)
        if length is not None and json_length is None:
            raise InvalidInput("Inference-Header-Content-Length must be a whole number of bytes")
        request = decode_request(body, json_length, request_limits())
        check_priority(principal, request)
        tenant = principal.tenant  # the token handle() let in
        held = dataplane.budget.take(tenant, request_bytes(request, len(body)))
        version = dataplane.choose_version(route, number, request, scope["headers"])
        rows = check_request(request, version.inputs, version.outputs,
                             max_batch_size=route.settings["max_batch_size"])
        answer = await dataplane.infer(route, version, request, rows)
        payload, header_length = encode_response(model_name=route.name, model_version=str(version.number),
                                                 request=request, outputs=answer.outputs)
    except PaddockError as error:
        code = error.http_status
        await respond_error(send, error, version)
    except Exception:  # noqa: BLE001 - a bug: answered and counted as 500, not left to uvicorn as 200
        failure = internal_error(f"infer on model {route.name!r}")
        code = failure.http_status
        await respond_error(send, failure, version)
    else:
        extra = [(b"x-paddock-version", str(version.number).encode())]
        if header_length is None:
            await respond(send, 200, payload, extra=extra)
        else:
            extra.append((b"inference-header-content-length", str(header_length).encode()))
            await respond(send, 200, payload, b"application/octet-stream", extra)
        dataplane.mirror(route, request, rows, answer, held)  # only now that the caller has its answer
    finally:
        dataplane.budget.give_back(tenant, held)
        in_flight.dec()
        # After the response has left: the transport writes it at the end of this loop tick.
        asyncio.get_running_loop().call_soon(record, dataplane, route, version, code,
                                             time.perf_counter() - started, answer, gated(route, number, request, code))


def check_priority(principal: Principal, request: InferRequest) -> None:
    """A request ahead of the default traffic (any explicit priority: 0 is served after them all)
    needs a token with the `priority` scope, so that one caller cannot jump every other's queue."""
    if request.priority and not principal.has_scope("priority"):
        raise Forbidden("a priority above the default needs a token with the 'priority' scope")


def gated(route: Any, number: int | None, request: InferRequest | None, code: int) -> bool:
    """Whether rollout gates judge this request: the deployment's split routed it (no version
    pinned in the path), and it is not a 504 of the caller's own deadline, shorter than the
    deployment's. Otherwise a `predict` caller could steer a rollout with cheap pinned requests."""
    if number is not None:
        return False
    timeout_us = request.timeout_us if request is not None else 0
    return not (code == 504 and timeout_us and timeout_us // 1000 < route.settings["default_timeout_ms"])


def record(dataplane: Any, route: Any, version: Any, code: int, seconds: float, answer: Any,
           gated: bool = True) -> None:
    """Count one answered request: Prometheus (this process) and the shared live figures (`gated`:
    also in the rollout gates' figures). A request refused before a version was chosen counts
    against the one traffic would go to."""
    if version is None:
        version = route.versions.get(route.active) if route.active is not None else None
    series = metrics.series(route.name, str(version.number) if version else "none")
    series.requests(code).inc()
    series.total.observe(seconds)
    if answer is not None:
        series.queue.observe(answer.queue_ms / 1000)
        series.compute.observe(answer.compute_ms / 1000)
        series.batch.observe(answer.batch)
    if version is not None:
        if answer is None:
            dataplane.stats.request(version.version_id, code, seconds * 1000, gated=gated)
        else:
            dataplane.stats.request(version.version_id, code, seconds * 1000, answer.queue_ms, answer.compute_ms,
                                    answer.batch, gated=gated)


async def metrics_page(scope: dict[str, Any], send: Send) -> None:
    """Prometheus text: this process's figures and the workers' (from their heartbeats). A
    scraper's `metrics` token (or PADDOCK_METRICS_PUBLIC) reads every series; a `read` token only
    the series of models it may see, with workers named opaquely (their names carry host and pid)."""
    global _collector_registered
    visible: set[str] | None = None
    if not settings.PADDOCK_METRICS_PUBLIC:
        principal = await tokens.authenticate(header(scope, b"authorization"), client_of(scope))
        if not (principal.has_scope("metrics") and principal.superuser):
            if not principal.has_scope("read"):
                raise Forbidden("token lacks the 'read' scope")
            visible = await sync_to_async(visible_model_names, thread_sensitive=True)(principal)
    if not _collector_registered:
        metrics.REGISTRY.register(metrics.WorkerCollector(settings.REDIS_URL))
        metrics.REGISTRY.register(metrics.JobCollector(settings.REDIS_URL))
        metrics.REGISTRY.register(metrics.StreamCollector(settings.REDIS_URL))
        _collector_registered = True
    # The worker, job and stream collectors do blocking Redis calls: keep them off the event loop.
    body = await asyncio.to_thread(generate_latest, metrics.REGISTRY)
    if visible is not None:
        body = metrics.only_models(body, visible)
    await respond(send, 200, body, CONTENT_TYPE_LATEST.encode())
