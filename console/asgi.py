"""ASGI entry point. The data plane (/v2/..., /metrics, and /ws/v2/... streams) is a lean
handler dispatched here, before Django's request cycle; the console's live figures
(/ws/live/...) are a Channels consumer; everything else is ordinary Django, behind the body
guard (console/bodylimit.py: credentials and size limits checked before Django reads a body)."""

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

django_application = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from console.bodylimit import BodyLimit  # noqa: E402
from serving.consumers import LiveFigures  # noqa: E402
from serving.v2 import http  # noqa: E402 - needs Django set up first
from serving.v2.http import Receive, Send  # noqa: E402

# Django reads a whole body before anything of ours runs: the guard decides first whether to let it.
guarded_django = BodyLimit(django_application)

# The console's own websockets: session auth, like its pages.
console_websockets = AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter([
    path("ws/live/models/<str:name>/", LiveFigures.as_asgi()),
])))


async def application(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        path = scope["path"]
        if path.startswith("/v2") or path == "/metrics":
            return await http.handle(scope, receive, send)
    elif scope["type"] == "websocket" and scope["path"].startswith("/ws/v2/"):
        from serving.v2 import stream

        return await stream.handle(scope, receive, send)
    elif scope["type"] == "websocket" and scope["path"].startswith("/ws/live/"):
        return await console_websockets(scope, receive, send)
    elif scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    return await guarded_django(scope, receive, send)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await http.tokens.uses.close()  # token uses noted since the last batched write (serving/v2/tokenuse.py)
            await send({"type": "lifespan.shutdown.complete"})
            return
