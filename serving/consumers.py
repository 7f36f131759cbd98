"""The console's live figures over a websocket (Channels): /ws/live/models/{model}/ pushes the
model's figures (serving.live.model_figures, the last 60 s) once a second to a signed-in person
who may see the model. Session auth (the console's cookie), origin checked against ALLOWED_HOSTS."""

import asyncio
import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from console.access import visible_models
from console.errors import NotFound, PaddockError, Unauthenticated
from serving import live

PUSH_SECONDS = 1.0
WINDOW_SECONDS = 60


class LiveFigures(AsyncWebsocketConsumer):
    """Pushes one model's figures while its page is open; the rollout's state is the traffic panel's (htmx)."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        name = self.scope["url_route"]["kwargs"]["name"]
        await self.accept()
        try:
            if user is None or not user.is_authenticated:
                raise Unauthenticated("sign in to see live figures")
            model = await database_sync_to_async(lambda: visible_models(user).filter(name=name).first())()
            if model is None:
                raise NotFound(f"model '{name}' not found")
        except PaddockError as error:  # closed with the error table's code, as the v2 streams are
            await self.close(code=error.row.websocket_close)
            return
        self.pusher = asyncio.get_running_loop().create_task(self.push(model))

    async def push(self, model: Any) -> None:
        while True:
            try:
                figures = await database_sync_to_async(live.model_figures)(model, WINDOW_SECONDS)
            except Exception as exc:  # noqa: BLE001 - Redis down: say so and keep trying
                figures = {"error": f"live figures unavailable: {exc}"}
            await self.send(text_data=json.dumps(figures))
            await asyncio.sleep(PUSH_SECONDS)

    async def disconnect(self, code: int) -> None:
        pusher = getattr(self, "pusher", None)
        if pusher is not None:
            pusher.cancel()
