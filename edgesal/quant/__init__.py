"""Quantization-aware gradient calibration: int8 saliency models whose maps stay faithful.

``quantize(model, QuantOptions(...))`` calibrates forward and gradient tensors separately,
keeps the fewest nodes in float that meet the map budget, and returns the int8 QDQ model with a
fidelity report. See docs/quantization.md. Names are loaded on first use, so importing
``edgesal.quant.cli`` to build the command line needs no onnx.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Budget": "edgesal.quant.options",
    "CalibrationWarning": "edgesal.quant.images",
    "ImageSplit": "edgesal.quant.images",
    "load_split": "edgesal.quant.images",
    "SearchOptions": "edgesal.quant.options",
    "QuantOptions": "edgesal.quant.options",
    "QuantResult": "edgesal.quant.pipeline",
    "quantize": "edgesal.quant.pipeline",
    "Report": "edgesal.quant.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'edgesal.quant' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
