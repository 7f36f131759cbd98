"""The security suite's own web process answers, and its memory can be read."""

from tests.integration.test_serving import infer_json, x_input
from tests.security.conftest import Served, WebProcess


def test_the_suites_web_process_serves_and_reports_its_memory(served: Served, web_process: WebProcess) -> None:
    status, _, body = infer_json(web_process.url, served.token, "iris", {"inputs": [x_input([1, 8])]})
    assert status == 200, body
    assert web_process.memory_kb("VmHWM") >= web_process.memory_kb("VmRSS") > 0
