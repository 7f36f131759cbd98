"""The bench's onnxruntime runtime for Seldon MLServer, which ships none: one session, the naive
server's settings (CPU provider, intra-op threads from the model's `parameters.extra`, spinning
off). Runs inside bench/.venv-mlserver; MLServer's adaptive batching hands `predict` the merged
requests, stacked along the first axis, and splits the outputs back.

model-settings.json: {"implementation": "mlserver_onnx.OnnxModel",
                      "parameters": {"uri": "/path/m1.onnx", "extra": {"intra_op_threads": 2}}}"""

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxModel(MLModel):
    async def load(self) -> bool:
        extra = (self.settings.parameters.extra if self.settings.parameters else None) or {}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(extra.get("intra_op_threads", 0))
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(await get_model_uri(self.settings), options,
                                             providers=["CPUExecutionProvider"])
        self._outputs = [output.name for output in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feed = {tensor.name: NumpyCodec.decode_input(tensor) for tensor in payload.inputs}
        results: list[np.ndarray] = self._session.run(self._outputs, feed)
        return InferenceResponse(model_name=self.name, id=payload.id, outputs=[
            NumpyCodec.encode_output(name, result) for name, result in zip(self._outputs, results, strict=True)])
