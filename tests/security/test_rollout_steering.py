"""A `predict` caller cannot steer a rollout (issue 20 item 7): requests that pin a version in the
path, or that its own short deadline cuts off, are answered and charted but never judged by the
gates. Sent to the real web process; read back from the live figures every web process shares."""

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from console.audit import Actor
from serving import livestats
from serving.services import configure_deployment
from tests import models as built
from tests.conftest import wait_until
from tests.integration.conftest import register_ready
from tests.integration.test_serving import call, infer_json, x_input
from tests.security.conftest import Served, WebProcess

DOCUMENT = {"inputs": [x_input([1, 8])]}
SHORT = {**DOCUMENT, "parameters": {"timeout": 1000}}  # 1 ms: the caller's own deadline (the deployment's: 30 s)


def counts_of(version_id: int, since: int) -> Counter[str]:
    return livestats.read_window(livestats.client(), version_id, since, int(time.time()) + 2)


def statuses(web: WebProcess, token: str, document: dict[str, Any], count: int,
             version: int | None = None) -> Counter[int]:
    """`count` requests at once: behind a slow model, short deadlines pass in the queue."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        return Counter(pool.map(lambda _: infer_json(web.url, token, "iris", document, version)[0], range(count)))


def test_pinned_and_self_timed_out_requests_are_not_judged(served: Served, web_process: WebProcess,
                                                          cast: dict[str, Any]) -> None:
    actor = Actor(user=cast["engineer"])
    slow = register_ready(actor=actor, model=served.version.model, data=built.slow_mlp_onnx())
    configure_deployment(actor=actor, model=served.version.model, changes={"active_version": slow.number})
    body = json.dumps(DOCUMENT).encode()
    wait_until(lambda: call(web_process.url, "POST", "/v2/models/iris/infer", body, served.token)[1]
               .get("x-paddock-version") == str(slow.number), timeout=60, interval=0.2)
    since = int(time.time()) + 1
    time.sleep(since - time.time())  # the warm-up's counts stay in earlier seconds
    routed_short = statuses(web_process, served.token, SHORT, 24)
    routed = statuses(web_process, served.token, DOCUMENT, 5)
    # v1 is no longer deployed: a worker may have let it go (30 s after its last batch; a slow
    # machine takes that long to validate the slow model). The full-deadline requests first load
    # it again (cold start), so that the 1 ms ones meet a loaded version, not a 503 "not loaded".
    pinned = (statuses(web_process, served.token, DOCUMENT, 5, version=served.version.number)
              + statuses(web_process, served.token, SHORT, 10, version=served.version.number))
    assert routed == Counter({200: 5}) and set(routed_short) <= {200, 504} and set(pinned) <= {200, 504}
    assert routed_short[504] >= 1, routed_short  # the caller's own deadline passed in the slow queue

    def flushed() -> bool:  # each web process adds its counts to Redis once a second
        return (sum(n for f, n in counts_of(slow.pk, since).items() if f[0] == "c") == 29
                and sum(n for f, n in counts_of(served.version.pk, since).items() if f[0] == "c") == 15)

    wait_until(flushed, timeout=10)
    # Charted: every request. Judged: only the routed ones that met the deployment's own deadline.
    judged = livestats.summarize(livestats.gated(counts_of(slow.pk, since)), 10)
    assert (judged["requests"], judged["errors"]) == (29 - routed_short[504], 0)
    assert livestats.summarize(livestats.gated(counts_of(served.version.pk, since)), 10)["requests"] == 0
