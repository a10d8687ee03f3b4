"""TFLite saliency models (``edgesal export -o x.sal.tflite``) in ``edgesal compare``.

The flatbuffer keeps the same ``edgesal.*`` map as an ONNX model's ``metadata_props`` (layout
rewritten to NHWC) in its ``Model.metadata`` entry ``edgesal``; it is read by the device runtime's
:func:`~edgesal.runtimes.backends.tflite_meta.read_metadata`, and the model runs on the device
runtime's :class:`~edgesal.runtimes.backends.litert.LiteRtBackend` (ai-edge-litert, else
tflite-runtime; XNNPACK), imported only when a TFLite model is opened. The spec is built by the
same rules as an ONNX
model's (:func:`edgesal.eval.model.contract`), so both sides of a comparison crop and normalize
alike and each gets the image in its own layout.
"""

from __future__ import annotations

import struct
from dataclasses import replace

import numpy as np

from edgesal.errors import ModelLoadError
from edgesal.eval.model import SaliencyRunner, contract
from edgesal.export.targets import TARGET_INPUT
from edgesal.runtimes.backends.litert import LiteRtBackend, interpreter_class
from edgesal.runtimes.backends.tflite_meta import ENTRY, read_metadata
from edgesal.runtimes.errors import BackendError
from edgesal.runtimes.model import probabilities


def _backend(data: bytes, where: str, threads: int) -> LiteRtBackend:
    """A LiteRT backend on ``data``, verified: a truncated or corrupt flatbuffer is refused."""
    try:
        factory, package = interpreter_class()
    except BackendError:
        raise ModelLoadError(
            f"{where}: running a .tflite model needs ai-edge-litert: "
            "pip install 'edgesal[device-litert]' (or tflite-runtime with numpy<2)"
        ) from None
    make = lambda: factory(model_content=data, num_threads=max(1, threads))  # noqa: E731
    try:
        backend = LiteRtBackend(where, make, package, {})
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(
            f"{where}: {package} cannot load it as a TFLite model (truncated or corrupt?): {exc}"
        ) from exc
    backend.metadata = _metadata(data, where)  # read once the flatbuffer is known to load
    return backend


def _metadata(data: bytes, where: str) -> dict[str, str]:
    try:
        props = read_metadata(data)
    except (struct.error, IndexError, ValueError) as exc:
        raise ModelLoadError(f"{where}: unreadable '{ENTRY}' metadata entry: {exc}") from exc
    if not props:
        raise ModelLoadError(
            f"{where}: no '{ENTRY}' metadata entry, so no saliency contract; make the model "
            "with 'edgesal export MODEL -o X.sal.tflite'"
        )
    return props


class TFLiteRunner(SaliencyRunner):
    """LiteRT interpreters: every call computes the scores and every map (no pruned forward)."""

    def __init__(self, data: bytes, where: str, threads: int = 1):
        self.backend = _backend(data, where, threads)
        props = self.backend.metadata
        spec = contract(props, self.backend.inputs, self.backend.output_shapes, where)
        self.spec = replace(spec, format="tflite")
        self.outputs = [self.spec.scores, *self.spec.saliency.values()]

    def _run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, list, None]:
        scores, *maps = self.backend.run(self.outputs, feeds)
        return scores, maps, None

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Per row, the device runtime's rule: used as they are when in [0, 1] summing to 1,
        else softmax (the flatbuffer does not say whether the graph ends in Softmax)."""
        rows = np.asarray(scores, np.float64).reshape(scores.shape[0], -1)
        return np.stack([probabilities(row) for row in rows])

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities [B, classes], ``spec.batch`` images per call."""
        step, chunks = self.spec.batch, []
        for start in range(0, len(pixels), step):
            part = self.to_model(pixels[start : start + step])
            feeds = {self.spec.input: self._fill(part, step)}
            if self.spec.target_input:
                feeds[TARGET_INPUT] = np.zeros(step, np.int64)  # the scores do not depend on it
            (scores,) = self.backend.run([self.spec.scores], feeds)
            chunks.append(self.probabilities(scores)[: len(part)])
        return np.concatenate(chunks)
