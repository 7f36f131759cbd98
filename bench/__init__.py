"""`make bench`: Paddock beside the raw onnxruntime limit, a naive server and its peers (see run.py)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository: where every process starts
