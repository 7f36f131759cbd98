"""The console's live figures over a websocket (Channels): /ws/live/models/{model}/ pushes the
model's figures (serving.live.model_figures, the last 60 s) once a second to a signed-in person
who may see the model. Session auth (the console's cookie), origin checked against ALLOWED_HOSTS.
The session is checked again before every push (still stored, still the same active person,
password unchanged, still able to see the model): a refusal is pushed as `{"error", "status"}`
and closes the socket with the error table's code (4401, 4404) and the message as the reason."""

import asyncio
import json
from importlib import import_module
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user
from django.http import HttpRequest

from console.access import visible_models
from console.errors import NotFound, PaddockError, Unauthenticated
from serving import live

PUSH_SECONDS = 1.0
WINDOW_SECONDS = 60
SIGN_IN = "sign in to see live figures"
SESSION_ENDED = "your session has ended: sign in again to see live figures"


class LiveFigures(AsyncWebsocketConsumer):
    """Pushes one model's figures while its page is open; the rollout's state is the traffic panel's (htmx)."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        name = self.scope["url_route"]["kwargs"]["name"]
        await self.accept()
        try:
            if user is None or not user.is_authenticated:
                raise Unauthenticated(SIGN_IN)
            model = await database_sync_to_async(lambda: visible_models(user).filter(name=name).first())()
            if model is None:
                raise NotFound(f"model '{name}' not found")
        except PaddockError as error:  # closed with the error table's code, as the v2 streams are
            await self.close(code=error.row.websocket_close, reason=_reason(error.message))
            return
        self.user_id = user.pk
        self.pusher = asyncio.get_running_loop().create_task(self.push(name))

    async def push(self, name: str) -> None:
        """Every PUSH_SECONDS: check the session again, then send the model's figures."""
        while True:
            try:
                model = await database_sync_to_async(self.allowed_model)(name)
            except PaddockError as error:
                await self.send(text_data=json.dumps({"error": error.message, "status": error.http_status}))
                await self.close(code=error.row.websocket_close, reason=_reason(error.message))
                return
            try:
                figures = await database_sync_to_async(live.model_figures)(model, WINDOW_SECONDS)
            except Exception as exc:  # noqa: BLE001 - Redis down: say so and keep trying
                figures = {"error": f"live figures unavailable: {exc}"}
            await self.send(text_data=json.dumps(figures))
            await asyncio.sleep(PUSH_SECONDS)

    def allowed_model(self, name: str) -> Any:
        """The model, if the session (read again from its store) still signs in the person who
        opened the socket, active, who may still see it; else Unauthenticated or NotFound."""
        request = HttpRequest()
        engine = import_module(settings.SESSION_ENGINE)
        request.session = engine.SessionStore(self.scope["session"].session_key)
        user = get_user(request)  # anonymous when the session is gone, the user inactive or the password changed
        if not user.is_authenticated or user.pk != self.user_id:
            raise Unauthenticated(SESSION_ENDED)
        model = visible_models(user).filter(name=name).first()
        if model is None:
            raise NotFound(f"model '{name}' not found")
        return model

    async def disconnect(self, code: int) -> None:
        pusher = getattr(self, "pusher", None)
        if pusher is not None:
            pusher.cancel()


def _reason(message: str) -> str:
    """A close frame's reason holds 123 bytes (RFC 6455); a model name from the URL may be longer."""
    return message.encode()[:123].decode(errors="ignore")
