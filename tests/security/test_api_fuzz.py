"""Issue 20, "the suite": a bounded schemathesis pass over the management API's own OpenAPI
schema (/api/schema/), against the security suite's real uvicorn: whatever a caller sends, no
answer is a 5xx (schemathesis's `not_a_server_error` check). Twice: as an engineer over every
operation, and as an admin over what only admins reach (the audit log, everyone's tokens,
workers' details).

The pass is `schemathesis run`, the CLI (schemathesis's lazy pytest loader does not run under
pytest 9), started in the test's own folder so that its caches stay out of the checkout.
Bounded and repeatable: a fixed seed, no shrinking, no example database, one worker; the
examples and coverage phases' fixed cases (boundary values, wrong types, missing fields), then at
most `MAX_EXAMPLES` generated cases per operation in the fuzzing phase, valid and invalid.
Generation is steered two ways: half the path parameters are real names and ids, so requests get
past the 404 of an unknown model, and now and then a string or integer is one of `HOSTILE`.

Nothing the pass sends takes away its own footing: it may revoke only a spare token, never the
one it runs with (checked after), and the /v2 data plane is not in the schema."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from console.audit import Actor
from console.models import ApiToken
from console.services import create_token
from registry import services as registry
from serving import rollouts
from tests.security.conftest import WebProcess

FUZZ_SEED = 20
MAX_EXAMPLES = 30
PHASES = "examples,coverage,fuzzing"
# What an admin reaches that an engineer does not: the audit log, everyone's tokens, workers'
# hosts and GPUs, every team's models, a rollout's approval.
ADMIN_PATHS = r"^/api/v1/(audit|tokens|workers)/|^/api/v1/models/$|/rollouts/"
TIME_LIMIT_S = 240  # a hard stop for one pass; the engineer's takes about a minute on two cores
# Values that made the API answer 500 before: NUL (no PostgreSQL text holds it), a digit
# int() refuses, times past datetime's range or with an offset PostgreSQL refuses, an impossible
# date, a UTC offset over 24 h, numbers past 64 bits.
HOSTILE = ["\x00", "a\x00b", "\u00b2", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", "2026-02-30T10:00:00",
           "2026-01-01T00:00:00+25:00", "36893488147419103232", "-36893488147419103232"]


def schemathesis_toml(*, token: str, spare_token_id: int, world: dict[str, list[Any]]) -> str:
    """The pass's configuration: its token, real values for path parameters half the time,
    `HOSTILE` values now and then for the other strings and integers (schemathesis sends no NUL
    in a path: tests/registry/test_models_api.py covers those)."""
    dictionaries = {**world, "hostile": HOSTILE}
    lines = [
        f"headers = {{ Authorization = {json.dumps('Bearer ' + token)} }}",
        "[generation]",
        'database = "none"',
        "with-security-parameters = false",  # the token above, not invented bearer tokens or cookies
        "[generation.dictionaries]",
        'string = { dictionary = "hostile", probability = 0.25 }',
        'integer = { dictionary = "hostile", probability = 0.1 }',
        "[parameters]",
        *(f'"path.{name}" = {{ dictionary = "{name}", probability = 0.5 }}' for name in world),
        *(f"[dictionaries.{name}]\nvalues = {json.dumps(values)}" for name, values in dictionaries.items()),
        # The one operation that could revoke the token the pass runs with: only ever the spare one.
        "[[operations]]",
        'include-method = "DELETE"',
        'include-path = "/api/v1/tokens/{token_id}/"',
        f'parameters = {{ "path.token_id" = {spare_token_id} }}',
    ]
    return "\n".join(lines) + "\n"


def run_schemathesis(url: str, config: Path, *options: str) -> tuple[int, str]:
    """`schemathesis run` over the server's schema: its exit status and output."""
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
        "run", f"{url}/api/schema/?format=json", "--checks", "not_a_server_error",
        "--phases", PHASES, "--max-examples", str(MAX_EXAMPLES), "--seed", str(FUZZ_SEED), "--no-shrink",
        "--workers", "1", "--request-timeout", "10", "--continue-on-failure", "--max-failures", "50", *options,
    ]
    started = time.monotonic()
    done = subprocess.run(command, cwd=config.parent, capture_output=True, text=True, timeout=TIME_LIMIT_S)
    cases = re.search(r"(\d+) generated", done.stdout)
    print(f"schemathesis: {cases[1] if cases else '?'} cases in {time.monotonic() - started:.1f} s")
    return done.returncode, done.stdout + done.stderr


def fuzz(web: WebProcess, folder: Path, world: dict[str, Any], *options: str) -> None:
    """One pass with `world`'s token; fails with schemathesis's report (each 5xx with a curl line)."""
    config = folder / "schemathesis.toml"
    config.write_text(schemathesis_toml(token=world["raw"], spare_token_id=world["spare"].pk,
                                        world=world["values"]))
    status, output = run_schemathesis(web.url, config, *options)
    assert status == 0, output[output.find("FAILURES"):] if "FAILURES" in output else output[-20000:]
    token: ApiToken = world["token"]
    token.refresh_from_db()
    assert token.revoked_at is None and token.last_used_at is not None  # it ran with its token throughout


@pytest.fixture
def fuzz_world(web_process: WebProcess, cast: dict[str, Any], iris: Any) -> dict[str, Any]:
    """Model iris (two ready versions, v1 deployed and `champion`, a canary of v2 warming), a
    spare token of the engineer's to revoke, and the real values of each path parameter."""
    system = Actor.system("tests")
    registry.set_alias(actor=system, model=iris, name="champion", version=iris.versions.get(number=1))
    rollout = rollouts.start_rollout(actor=system, model=iris, candidate=2, strategy="canary")
    spare, _ = create_token(actor=system, user=cast["engineer"], name="spare", scopes=["read"])
    values: dict[str, list[Any]] = {
        "name": ["iris"], "number": [1, 2], "alias": ["champion"], "rollout_id": [rollout.pk],
        "action": ["pause", "resume", "promote", "rollback", "approve"], "token_id": [spare.pk],
    }
    return {"spare": spare, "values": values}


def with_token(world: dict[str, Any], user: Any, scopes: list[str]) -> dict[str, Any]:
    """`world` and a new token of `user`'s: the one the pass runs with."""
    token, raw = create_token(actor=Actor.system("tests"), user=user, name="fuzz", scopes=scopes)
    return {**world, "token": token, "raw": raw}


@pytest.mark.django_db(transaction=True)  # the server is another process: it must see the rows
def test_no_request_of_an_engineer_is_answered_with_a_server_error(
        fuzz_world: dict[str, Any], cast: dict[str, Any], web_process: WebProcess, tmp_path: Path) -> None:
    fuzz(web_process, tmp_path, with_token(fuzz_world, cast["engineer"], ["read", "manage", "predict"]))


@pytest.mark.django_db(transaction=True)
def test_no_request_of_an_admin_is_answered_with_a_server_error(
        fuzz_world: dict[str, Any], cast: dict[str, Any], web_process: WebProcess, tmp_path: Path) -> None:
    admin = with_token(fuzz_world, cast["admin"], ["read", "manage", "predict", "admin"])
    fuzz(web_process, tmp_path, admin, "--include-path-regex", ADMIN_PATHS)
