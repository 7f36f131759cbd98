"""The registry's enumerations: artifact formats, version statuses, v2 datatypes."""

from django.db import models


class ArtifactFormat(models.TextChoices):
    """The artifact formats Paddock can register and serve (never a pickle)."""

    ONNX = "onnx", "ONNX"
    TORCHSCRIPT = "torchscript", "TorchScript"


class VersionStatus(models.TextChoices):
    """A version's validation: pending, validating (a worker claimed it), then ready (servable) or failed."""

    PENDING = "pending", "Pending"
    VALIDATING = "validating", "Validating"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


# The alias a model serves when no deployment names a version; its first ready version carries it.
CHAMPION = "champion"


# KServe v2 datatypes (the protocol's names are the signature's names).
V2_DATATYPES = [
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]
