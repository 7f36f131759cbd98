"""PostgreSQL stopped under load (issue 21): `manage.py runstack` started as a user does, on a
PostgreSQL cluster of the test's own (initdb + pg_ctl on a free port; never the machine's), the
demo model under CLIENTS clients, then `pg_ctl stop -m fast` for OUTAGE_SECONDS.

- Inference goes on answering 200 from the last good routes and tokens in memory.
- The console and the management API answer 503 `the database is unavailable: …`.
- Once PostgreSQL is back, nothing is lost: the API answers again, the token uses noted during
  the outage are written (`last_used_at`), the audit chain verifies.
- With PADDOCK_DB_OUTAGE_GRACE_SECONDS small, inference past the grace answers 503 with the reason.

The figures are printed (pytest -s) for docs/reliability.md."""

import http.cookiejar
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from serving.v2.outage import UNAVAILABLE, too_old
from tests.conftest import free_port, wait_until
from tests.reliability.load import Load, report, summarize
from tests.reliability.pgcluster import Cluster
from tests.reliability.stack import ADMIN_PASSWORD, GUARD_SECONDS, Stack, runstack

OUTAGE_SECONDS = 60.0
GRACE_SECONDS = 5.0  # the grace test's PADDOCK_DB_OUTAGE_GRACE_SECONDS
CLIENTS = 32
WARM_SECONDS = 3.0
PROBE_EVERY_SECONDS = 2.0
PROBE_MODEL = "made-by-the-probe"


@contextmanager
def stack_on(cluster: Cluster, folder: Path, **settings: str) -> Iterator[Stack]:
    """`make run` (runstack) with DATABASE_URL on the cluster; token uses written each second."""
    with runstack(folder, DATABASE_URL=cluster.url(), PADDOCK_TOKEN_USE_FLUSH_SECONDS="1", **settings) as stack:
        yield stack


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A running PostgreSQL of this test's own, with an empty `paddock` database; removed after."""
    own = Cluster(free_port())
    try:
        own.start()
        own.create_database()
        yield own
    finally:
        own.remove()


def call(request: urllib.request.Request, opener: Any = None) -> tuple[int, str]:
    """Status and body of one request (an HTTP error is an answer too)."""
    try:
        with (opener or urllib.request.build_opener()).open(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def signed_in(stack: Stack) -> Any:
    """An opener holding a console session of the admin (signed in through the login form)."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    _, page = call(urllib.request.Request(f"{stack.url}/login/"), opener)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert csrf is not None, page[:500]
    form = f"username=admin&password={ADMIN_PASSWORD}&csrfmiddlewaretoken={csrf[1]}".encode()
    status, page = call(urllib.request.Request(f"{stack.url}/login/", data=form), opener)
    assert status == 200 and "Log out" in page, page[:500]
    return opener


def probes(stack: Stack, token: str, session: Any, team: str) -> dict[str, tuple[int, str]]:
    """One request each of the console (page and htmx fragment) and the API (read, and a write
    that creates model PROBE_MODEL of `team`)."""
    bearer = {"Authorization": f"Bearer {token}"}
    write = json.dumps({"name": PROBE_MODEL, "team": team}).encode()
    return {
        "console page": call(urllib.request.Request(f"{stack.url}/models/"), session),
        "console fragment": call(urllib.request.Request(f"{stack.url}/models/", headers={"HX-Request": "true"}),
                                 session),
        "API read": call(urllib.request.Request(f"{stack.url}/api/v1/models/", headers=bearer)),
        "API write": call(urllib.request.Request(f"{stack.url}/api/v1/models/", data=write, method="POST",
                                                 headers={**bearer, "Content-Type": "application/json"})),
    }


def listed_models(stack: Stack, token: str) -> dict[str, str]:
    """The models the API lists: name → team."""
    status, body = call(urllib.request.Request(f"{stack.url}/api/v1/models/",
                                               headers={"Authorization": f"Bearer {token}"}))
    assert status == 200, body
    document = json.loads(body)
    listed = document["results"] if isinstance(document, dict) else document
    return {model["name"]: model["team"] for model in listed}


def last_used(cluster: Cluster, name: str) -> datetime | None:
    """The token's last_used_at, read from the database itself."""
    [(value,)] = cluster.query("SELECT last_used_at FROM console_apitoken WHERE name = %s", name)
    return value if isinstance(value, datetime) else None


def test_inference_rides_out_a_database_outage_while_the_console_and_api_say_so(
        cluster: Cluster, tmp_path: Path) -> None:
    with stack_on(cluster, tmp_path) as stack:
        predict, reader = stack.new_token("predict", name="load"), stack.new_token("read", "manage", name="probe")
        stack.serving(token=predict)
        session = signed_in(stack)
        models_before = listed_models(stack, reader)
        team = models_before["demo-mlp"]
        load = Load(stack.port, predict, "demo-mlp", clients=CLIENTS)
        load.start()
        time.sleep(WARM_SECONDS)  # the fault lands on a busy stack
        stopping = time.monotonic()
        cluster.stop()
        down = time.monotonic()
        answers: dict[str, list[tuple[int, str]]] = {}
        while time.monotonic() < down + OUTAGE_SECONDS:
            for what, answer in probes(stack, reader, session, team).items():
                answers.setdefault(what, []).append(answer)
            time.sleep(PROBE_EVERY_SECONDS)
        outcomes = load.stop()  # the last requests were sent while the database was still down
        last_sent_wall = time.time() - (time.monotonic() - max(o.sent for o in outcomes))
        cluster.start()
        up = time.monotonic()
        wait_until(lambda: call(urllib.request.Request(f"{stack.url}/api/v1/models/", headers={
            "Authorization": f"Bearer {reader}"}))[0] == 200, timeout=GUARD_SECONDS, interval=0.1)
        api_back_s = time.monotonic() - up

        # The token uses noted while the database was down are written once it is back.
        def written() -> bool:
            used = last_used(cluster, "load")
            return used is not None and used.timestamp() >= last_sent_wall
        wait_until(written, timeout=GUARD_SECONDS, interval=0.2)
        uses_written_s = time.monotonic() - up

        after = Load(stack.port, predict, "demo-mlp", clients=CLIENTS)
        after.start()
        steady = after.wait_steady(up, timeout=GUARD_SECONDS)
        after_outcomes = after.stop()
        back = probes(stack, reader, session, team)
        audit = stack.manage("verify_audit")
        models_after = listed_models(stack, reader)
        # Beat's next run (every 2 s) after PostgreSQL returned says so.
        wait_until(lambda: "periodic tasks run again" in stack.log.read_text(), timeout=GUARD_SECONDS, interval=0.2)
        log = stack.log.read_text()

    summary = summarize(outcomes, fault="PostgreSQL stopped (`pg_ctl stop -m fast`) for 60 s", fault_at=stopping,
                        gone_at=down, clients=CLIENTS, refused=load.refused)
    during = [o for o in outcomes if o.sent >= down]
    report(summary)
    print(f"during the outage: {len(during)} requests sent, {sum(o.kind == 'ok' for o in during)} answered 200\n"
          f"console and API during the outage: {sum(len(a) for a in answers.values())} requests, "
          f"{sum(s == 503 for a in answers.values() for s, _ in a)} answered 503\n"
          f"after PostgreSQL returned: the API answered 200 after {api_back_s:.1f} s; the outage's token uses "
          f"were written after {uses_written_s:.1f} s; {len(after_outcomes)} more requests, "
          f"{sum(o.kind == 'ok' for o in after_outcomes)} answered 200")

    assert summary.ok == summary.sent and len(during) > 0, summary.report()  # every one 200, none lost or hung
    assert steady, after.outcomes[-5:]
    page, fragment = answers["console page"], answers["console fragment"]
    assert {status for status, _ in page + fragment} == {503}
    assert all(UNAVAILABLE in body and "<html" in body for _, body in page)  # the page, with the reason
    assert all(body.strip() == f'<p class="error" id="service-error">{UNAVAILABLE}</p>' for _, body in fragment)
    for what in ("API read", "API write"):
        assert [(status, json.loads(body)) for status, body in answers[what]] == [
            (503, {"detail": UNAVAILABLE})] * len(answers[what]), answers[what]
    assert {what: status for what, (status, _) in back.items()} == {
        "console page": 200, "console fragment": 200, "API read": 200, "API write": 201}
    assert models_after == {**models_before, PROBE_MODEL: team}  # nothing lost; the refused writes left nothing
    assert audit.returncode == 0 and "audit chain intact" in audit.stdout, audit.stdout + audit.stderr
    # Beat's periodic tasks (rollout gates every 2 s, rollups, re-queued validations) said so
    # once and skipped their runs, rather than a traceback each run; and ran again after.
    assert log.count("periodic tasks skip their runs until it is back") == 1, log[-3000:]
    assert "raised unexpected" not in log, log[-3000:]


def test_past_the_grace_inference_answers_503_with_the_reason_and_recovers(cluster: Cluster, tmp_path: Path) -> None:
    with stack_on(cluster, tmp_path, PADDOCK_DB_OUTAGE_GRACE_SECONDS=f"{GRACE_SECONDS:g}") as stack:
        predict = stack.new_token("predict", name="load")
        stack.serving(token=predict)
        load = Load(stack.port, predict, "demo-mlp", clients=CLIENTS)
        load.start()
        time.sleep(WARM_SECONDS)
        cluster.stop()
        down = time.monotonic()
        # Every route and token was last loaded before `down`; the loop may note a load that
        # finished just before a moment late, so the bound is taken a little after the grace.
        past_grace = down + GRACE_SECONDS + 1.0
        assert load.wait_for(lambda seen: sum(o.sent >= past_grace for o in seen) >= 4 * CLIENTS, GUARD_SECONDS)
        restarting = time.monotonic()
        cluster.start()
        up = time.monotonic()
        steady = load.wait_steady(up, timeout=GUARD_SECONDS)
        outcomes = load.stop()

    summary = summarize(outcomes, fault=f"PostgreSQL stopped, grace {GRACE_SECONDS:g} s", fault_at=down,
                        gone_at=down, clients=CLIENTS, refused=load.refused)
    report(summary)
    reasons = {too_old("tokens", GRACE_SECONDS), too_old("routes", GRACE_SECONDS)}
    within = [o for o in outcomes if down <= o.sent and o.ended < down + GRACE_SECONDS - 1.0]
    past = [o for o in outcomes if past_grace <= o.sent and o.ended < restarting]
    assert any(o.kind == "ok" for o in within)  # served from memory while within the grace
    assert past and all(o.status == 503 and o.message in reasons for o in past), {o.message for o in past}
    assert all(o.kind == "ok" or (o.status == 503 and o.message in reasons) for o in outcomes), summary.report()
    assert steady, outcomes[-5:]
