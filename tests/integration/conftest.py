"""Fixtures for the data plane: a served model (registered, validated by the real worker) and
a predict token."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from console.audit import Actor
from console.services import create_token
from registry import services
from registry.models import ModelVersion
from tests import models as built
from tests.conftest import wait_until


@dataclass
class Served:
    name: str
    version: ModelVersion
    token: str
    artifact: bytes

    @property
    def path(self) -> Path:
        return Path(self.version.artifact.path)


def register_ready(*, actor: Actor, model: Any, data: bytes, filename: str = "model.onnx",
                   **options: Any) -> ModelVersion:
    version, _ = services.register_version(actor=actor, model=model, upload=SimpleUploadedFile(filename, data),
                                           **options)

    def ready() -> ModelVersion | None:
        version.refresh_from_db()
        return version if version.status in ("ready", "failed") else None

    wait_until(ready, timeout=90, interval=0.2)
    assert version.status == "ready", version.status_reason
    return version


@pytest.fixture(autouse=True)
def _forget_wanted_versions() -> Iterator[None]:
    """Each test's database restarts its ids: a version asked for in an earlier test must not
    make the workers hold today's version with the same id."""
    yield
    import redis
    from django.conf import settings

    from serving.v2.wire import wanted_key

    redis.Redis.from_url(settings.REDIS_URL).delete(wanted_key())


def wait_until_served(base: str, token: str, name: str, version: int) -> None:
    """Until the web process's route cache (1 s) knows this model and a worker holds the version."""
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=base.removeprefix("http://"))
    headers = {"Authorization": f"Bearer {token}"}

    def ready() -> bool:
        try:
            return bool(client.is_model_ready(name, str(version), headers=headers))
        except Exception:  # noqa: BLE001 - 404 until the cache refreshes
            return False

    wait_until(ready, timeout=30, interval=0.2)


@pytest.fixture
def served(transactional_db: Any, cast: dict[str, Any], teams: dict[str, Any], celery_worker: Any,
           web_server: str) -> Served:
    """Model `iris` (8 inputs → 3 probabilities), its v1 ready and held, and a predict+read token."""
    actor = Actor(user=cast["engineer"])
    model = services.create_model(actor=actor, name="iris", team=teams["ml"])
    data = built.mlp_onnx(inputs=8, outputs=3)
    version = register_ready(actor=actor, model=model, data=data)
    _, raw = create_token(actor=actor, user=cast["engineer"], name="predictor", scopes=["predict", "read"])
    wait_until_served(web_server, raw, "iris", 1)
    return Served("iris", version, raw, data)
