"""int8 TFLite output of ``edgesal quantize``: the QDQ model's decisions lowered to TFLite.

The calibrated QDQ model (scales, zero points, which nodes stay float) is lowered by
:func:`edgesal.converters.tflite.quantized.qdq_to_tflite`; nothing is recalibrated. The fidelity
report
is then measured again with the TFLite interpreter (ai-edge-litert, else tflite-runtime), so its
rows describe the file that is written.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edgesal.errors import InputError
from edgesal.quant.pipeline import QuantResult, fidelity_rows

OUTPUT_FORMAT = "tflite-int8"


def interpreter(data: bytes, threads: int = 2):
    """A TFLite interpreter of ``data`` with tensors allocated (XNNPACK applies by default)."""
    from edgesal.runtimes.backends.litert import interpreter_class
    from edgesal.runtimes.errors import BackendError

    try:
        factory, _ = interpreter_class()
    except BackendError as exc:
        raise InputError(
            f"--format tflite measures the int8 maps with a TFLite interpreter: {exc}"
        ) from exc
    it = factory(model_content=data, num_threads=threads)
    it.allocate_tensors()
    return it


def runner(data: bytes, scores: str, saliency: str, threads: int = 2):
    """feed (ONNX layout, NCHW images) -> (scores, map) of the TFLite model ``data``."""
    it = interpreter(data, threads)
    signature = it.get_signature_runner()
    details = it.get_input_details()

    def run(feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        feeds = {}
        for d in details:
            value = feed[d["name"]]
            if value.shape != tuple(d["shape"]) and value.ndim == 4:
                value = value.transpose(0, 2, 3, 1)  # the image input is stored NHWC
            feeds[d["name"]] = np.ascontiguousarray(value, dtype=d["dtype"])
        out = signature(**feeds)
        return out[scores], out[saliency]

    return run


def to_tflite(result: QuantResult, threads: int = 2) -> tuple[bytes, QuantResult]:
    """The int8 TFLite flatbuffer of ``result.model`` and the result with its report measured
    on that flatbuffer (same images, same budget)."""
    from edgesal.converters.tflite.quantized import qdq_to_tflite

    data = qdq_to_tflite(result.model)
    graph = result.graph
    run = runner(data, graph.scores, graph.saliency, threads)
    rows = fidelity_rows(result.source, run, graph, result.preprocess, result.samples, threads)
    report = dataclasses.replace(
        result.report,
        output_format=OUTPUT_FORMAT,
        rows=rows,
        notes=[
            *result.report.notes,
            "maps measured with the TFLite interpreter on the int8 flatbuffer (scales and "
            "float nodes from the QDQ model)",
        ],
    )
    return data, dataclasses.replace(result, report=report)
