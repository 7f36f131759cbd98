"""The baseline: a naive v2 server, FastAPI + uvicorn, one process, one request → one
session.run, JSON tensors, with the same onnxruntime settings as Paddock's workers.
Run: BENCH_MODEL=path.onnx BENCH_MODEL_NAME=M1 uvicorn bench.naive_server:app"""

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

DTYPES = {"FP32": np.float32, "INT64": np.int64, "INT32": np.int32, "FP64": np.float64}

options = ort.SessionOptions()
options.intra_op_num_threads = int(os.environ.get("BENCH_INTRA_OP_THREADS", "0"))
options.add_session_config_entry("session.intra_op.allow_spinning", "0")
session = ort.InferenceSession(os.environ["BENCH_MODEL"], options, providers=["CPUExecutionProvider"])
outputs = [o.name for o in session.get_outputs()]
name = os.environ.get("BENCH_MODEL_NAME", "model")
app = FastAPI()


@app.post("/v2/models/{model}/infer")
async def infer(model: str, request: Request) -> JSONResponse:
    body = await request.json()
    feed = {t["name"]: np.asarray(t["data"], dtype=DTYPES[t["datatype"]]).reshape(t["shape"]) for t in body["inputs"]}
    results = session.run(outputs, feed)
    return JSONResponse({"model_name": name, "outputs": [
        {"name": n, "datatype": "FP32", "shape": list(r.shape), "data": r.ravel().tolist()}
        for n, r in zip(outputs, results, strict=True)]})
