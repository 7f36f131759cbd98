from typing import Any

import numpy as np
import onnxruntime as ort
import tritonclient.http as triton


def test_tritonclient_binary_roundtrip(served: Any, web_server: str) -> None:
    client = triton.InferenceServerClient(url=web_server.removeprefix("http://"),
                                          network_timeout=30, connection_timeout=30)
    headers = {"Authorization": f"Bearer {served.token}"}
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    tensor = triton.InferInput("x", [4, 8], "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("iris", [tensor], headers=headers)
    expected = ort.InferenceSession(str(served.path)).run(None, {"x": x})[0]
    np.testing.assert_allclose(result.as_numpy("probs"), expected, rtol=1e-5, atol=1e-6)
