"""LiteRT backend: ``ai-edge-litert`` (numpy 2), else ``tflite-runtime`` (numpy < 2).

Both interpreters apply the XNNPACK delegate to float models by default (op resolver ``AUTO``);
``threads`` is passed to the interpreter and to XNNPACK. Inputs and outputs are addressed by
their tensor names, so the converter must name them as the ONNX contract does (``saliency`` ...).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgesal.runtimes.backends.base import BackendOptions, check_input_bytes
from edgesal.runtimes.backends.tflite_meta import read_input_shapes, read_metadata
from edgesal.runtimes.errors import BackendError, ModelError

log = logging.getLogger("edgesal.runtimes.backend")


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
    """A pool of interpreters over one flatbuffer; every output is computed on each run (no
    pruning for flatbuffers). An interpreter is not thread-safe, so each concurrent run
    (``--workers``) gets its own: the first is made at load, another only when a run finds all
    of them busy, so ``--workers N`` ends with N interpreters (N activation arenas and packed
    weight copies) and one worker keeps one."""

    def __init__(
        self, path: Path | str, make: Callable[[], Any], package: str, metadata: dict[str, str]
    ):  # make() -> ai-edge-litert's or tflite-runtime's Interpreter (neither ships types)
        self.path, self.metadata = str(path), metadata
        self.name = f"{package}/XNNPACK"
        self._make = make
        self._idle: list = []
        self._lock = threading.Lock()
        self.interpreters = 0
        first = self._new_interpreter()
        self._in = {d["name"]: d for d in first.get_input_details()}
        self._out = {d["name"]: d for d in first.get_output_details()}
        self._idle.append(first)
        self.inputs = {
            n: (tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"]).name)
            for n, d in self._in.items()
        }
        self.outputs = list(self._out)
        self.output_shapes = {n: tuple(int(x) for x in d["shape"]) for n, d in self._out.items()}

    @classmethod
    def load(cls, path: Path, options: BackendOptions) -> LiteRtBackend:
        factory, package = interpreter_class()
        threads = max(1, options.threads)
        try:
            raw = path.read_bytes()
            for name, (shape, itemsize) in read_input_shapes(raw).items():  # before allocating
                check_input_bytes(str(path), name, [max(d, 1) for d in shape], itemsize)
            make = lambda: factory(model_content=raw, num_threads=threads)  # noqa: E731
            backend = cls(path, make, package, read_metadata(raw))
        except (ValueError, RuntimeError, OSError, IndexError) as exc:
            raise ModelError(f"{path}: {package} cannot load the model: {exc}") from exc
        if options.device not in ("auto", "cpu"):
            log.warning(
                "%s: --device %s applies to onnxruntime; LiteRT runs on the CPU",
                path,
                options.device,
            )
        log.info("%s: %s, %d threads", path, backend.name, options.threads)
        return backend

    def _new_interpreter(self):
        interpreter = self._make()
        interpreter.allocate_tensors()
        with self._lock:
            self.interpreters += 1
        return interpreter

    def _acquire(self):
        with self._lock:
            if self._idle:
                return self._idle.pop()
        interpreter = self._new_interpreter()
        log.info("%s: %d interpreters for concurrent runs", self.path, self.interpreters)
        return interpreter

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        interpreter = self._acquire()
        try:
            for name, value in feeds.items():
                if name in self._in:
                    detail = self._in[name]
                    value = value.astype(detail["dtype"], copy=False)
                    interpreter.set_tensor(detail["index"], value)
            interpreter.invoke()
            return [interpreter.get_tensor(self._out[name]["index"]) for name in outputs]
        finally:
            self._release(interpreter)

    def _release(self, interpreter) -> None:
        with self._lock:
            self._idle.append(interpreter)

    def subset(self, outputs: list[str]) -> LiteRtBackend:
        return self
