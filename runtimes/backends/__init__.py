"""Inference backends, chosen lazily by the model file's suffix.

``.onnx`` -> onnxruntime (:mod:`edgesal.runtimes.backends.onnxrt`); ``.tflite`` -> LiteRT
(``ai-edge-litert``, else ``tflite-runtime``; :mod:`edgesal.runtimes.backends.litert`). Only the
module of the chosen backend is imported, so a device installs exactly one of them. What every
backend shares (:class:`BackendOptions`, the :class:`Backend` protocol) lives in
:mod:`edgesal.runtimes.backends.base`, which the backend modules import.
"""

from __future__ import annotations

from pathlib import Path

from edgesal.runtimes.backends.base import Backend, BackendOptions
from edgesal.runtimes.errors import BackendError, ModelError
from edgesal.runtimes.heap import return_free_heap


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


__all__ = ["Backend", "BackendOptions", "load_backend"]
