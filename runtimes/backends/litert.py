"""LiteRT backend: ``ai-edge-litert`` (numpy 2), else ``tflite-runtime`` (numpy < 2).

Both interpreters apply the XNNPACK delegate to float models by default (op resolver ``AUTO``);
``threads`` is passed to the interpreter and to XNNPACK. Inputs and outputs are addressed by
their tensor names, so the converter must name them as the ONNX contract does (``saliency`` ...).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from runtimes.backends import BackendOptions
from runtimes.backends.tflite_meta import read_metadata
from runtimes.errors import BackendError, ModelError

log = logging.getLogger("runtimes.backend")


def interpreter_class() -> tuple[type, str]:
    """The LiteRT interpreter class and its package: ai-edge-litert, else tflite-runtime."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime"
    except ImportError as exc:
        raise BackendError(
            ".tflite models need ai-edge-litert (pip install 'edgesal[device-litert]') "
            f"or tflite-runtime: {exc}"
        ) from exc


class LiteRtBackend:
    """One interpreter; every output is computed on each run (no pruning for flatbuffers). An
    interpreter is not thread-safe, so concurrent runs (``--workers``) take turns on it."""

    def __init__(self, path: Path, interpreter, package: str, metadata: dict[str, str]):
        self.path, self.metadata = str(path), metadata
        self.name = f"{package}/XNNPACK"
        self._interp = interpreter
        self._lock = threading.Lock()
        interpreter.allocate_tensors()
        self._in = {d["name"]: d for d in interpreter.get_input_details()}
        self._out = {d["name"]: d for d in interpreter.get_output_details()}
        self.inputs = {
            n: (tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"]).name)
            for n, d in self._in.items()
        }
        self.outputs = list(self._out)

    @classmethod
    def load(cls, path: Path, options: BackendOptions) -> LiteRtBackend:
        factory, package = interpreter_class()
        try:
            raw = path.read_bytes()
            metadata = read_metadata(raw)
            interpreter = factory(model_content=raw, num_threads=max(1, options.threads))
        except (ValueError, RuntimeError, OSError, IndexError) as exc:
            raise ModelError(f"{path}: {package} cannot load the model: {exc}") from exc
        if options.device not in ("auto", "cpu"):
            log.warning(
                "%s: --device %s applies to onnxruntime; LiteRT runs on the CPU",
                path,
                options.device,
            )
        backend = cls(path, interpreter, package, metadata)
        log.info("%s: %s, %d threads", path, backend.name, options.threads)
        return backend

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            for name, value in feeds.items():
                if name in self._in:
                    detail = self._in[name]
                    value = value.astype(detail["dtype"], copy=False)
                    self._interp.set_tensor(detail["index"], value)
            self._interp.invoke()
            return [self._interp.get_tensor(self._out[name]["index"]) for name in outputs]

    def subset(self, outputs: list[str]) -> LiteRtBackend:
        return self
