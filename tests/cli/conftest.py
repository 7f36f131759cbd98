"""Fixtures for the `paddock` command: the installed script run as a person runs it, with a
config folder of its own, against the suite's real web server (and worker, where a test needs one)."""

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from console.audit import Actor
from console.services import create_token
from tests.integration.conftest import _forget_wanted_versions, served  # noqa: F401  (fixtures used here)

# The script pip installed beside the interpreter running the suite (.venv/bin/paddock).
PADDOCK = Path(sys.executable).parent / "paddock"


@dataclass(frozen=True)
class Paddock:
    """The `paddock` script with its own config folder; `env` on top of the suite's environment."""

    config_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, stdin: str | None = None,
                 timeout: float = 180) -> "subprocess.CompletedProcess[str]":
        env = {key: value for key, value in os.environ.items() if key not in ("PADDOCK_URL", "PADDOCK_TOKEN")}
        env.update(PADDOCK_CONFIG_DIR=str(self.config_dir), COLUMNS="200", **self.env)
        return subprocess.run([str(PADDOCK), *args], env=env, input=stdin or "", capture_output=True, text=True,
                              timeout=timeout)  # stdin never the suite's own: a pipe, empty unless given

    def with_token(self, token: str) -> "Paddock":
        """The same config folder, the token overridden by PADDOCK_TOKEN (as a script would)."""
        return replace(self, env={**self.env, "PADDOCK_TOKEN": token})

    @property
    def credentials(self) -> Path:
        return self.config_dir / "credentials.json"


@pytest.fixture
def paddock(tmp_path: Path) -> Paddock:
    """`paddock`, logged in nowhere."""
    return Paddock(tmp_path / "config")


@pytest.fixture
def token_of(transactional_db: Any, cast: dict[str, Any]) -> Callable[..., str]:
    """A real token of one of the cast with the given scopes (read and manage by default)."""

    def make(who: str, *scopes: str) -> str:
        _, raw = create_token(actor=Actor.system("tests"), user=cast[who], name=f"{who}-cli",
                              scopes=list(scopes or ["read", "manage"]))
        return raw

    return make


@pytest.fixture
def engineer(paddock: Paddock, web_server: str, token_of: Callable[..., str]) -> Paddock:
    """`paddock` logged in (`paddock login`) to the web server as the engineer of team ml."""
    done = paddock("login", web_server, "--token", token_of("engineer"))
    assert done.returncode == 0, done.stderr
    return paddock
