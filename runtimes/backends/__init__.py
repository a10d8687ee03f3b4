"""Inference backends, chosen lazily by the model file's suffix.

``.onnx`` -> onnxruntime (:mod:`edgesal.runtimes.backends.onnxrt`); ``.tflite`` -> LiteRT
(``ai-edge-litert``, else ``tflite-runtime``; :mod:`edgesal.runtimes.backends.litert`). Only the
module of
the chosen backend is imported, so a device installs exactly one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from edgesal.runtimes.errors import BackendError, ModelError
from edgesal.runtimes.heap import return_free_heap


@dataclass(frozen=True)
class BackendOptions:
    """``threads``: intra-op threads; ``device``: ``auto``, ``cpu``, ``cuda`` or ``tensorrt``
    (onnxruntime only); ``trt_cache``: folder for TensorRT engines (built once, then reused)."""

    threads: int = 2
    device: str = "auto"
    trt_cache: str | None = None


class Backend(Protocol):
    """A loaded model: named inputs and outputs, ``edgesal.*`` metadata, one ``run`` call."""

    name: str
    path: str
    inputs: dict[str, tuple[tuple, str]]  # name -> (shape, numpy dtype name)
    outputs: list[str]
    metadata: dict[str, str]

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...

    def subset(self, outputs: list[str]) -> Backend:
        """A backend computing only ``outputs`` (a pruned graph when the format allows)."""
        ...


def load_backend(path: str | Path, options: BackendOptions | None = None) -> Backend:
    """Open ``path`` with the backend its suffix names."""
    options = options or BackendOptions()
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        try:
            from edgesal.runtimes.backends.onnxrt import OnnxRuntimeBackend
        except ImportError as exc:
            raise BackendError(
                f"{path}: .onnx models need onnxruntime (pip install 'edgesal[device]'): {exc}"
            ) from exc
        backend = OnnxRuntimeBackend.load(path, options)
    elif suffix == ".tflite":
        from edgesal.runtimes.backends.litert import LiteRtBackend

        backend = LiteRtBackend.load(path, options)
    else:
        raise ModelError(f"{path}: unknown model format '{suffix}' (expected .onnx or .tflite)")
    return_free_heap()
    return backend
