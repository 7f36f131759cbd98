"""KServe v2 datatype names and their numpy and ONNX counterparts. No onnx import: the data
plane uses this module on its hot path."""

import numpy as np

V2_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}
NUMPY_TO_V2 = {dtype: name for name, dtype in V2_TO_NUMPY.items()}

# onnx.TensorProto.DataType values (stable in the ONNX spec).
ONNX_TO_V2: dict[int, str] = {
    9: "BOOL", 2: "UINT8", 4: "UINT16", 12: "UINT32", 13: "UINT64",
    3: "INT8", 5: "INT16", 6: "INT32", 7: "INT64",
    10: "FP16", 1: "FP32", 11: "FP64", 8: "BYTES",
}
