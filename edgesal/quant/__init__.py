"""Quantization-aware gradient calibration: int8 saliency models whose maps stay faithful.

``quantize(model, QuantOptions(...))`` calibrates forward and gradient tensors separately,
keeps the fewest nodes in float that meet the map budget, and returns the int8 QDQ model with a
fidelity report. See docs/quantization.md.
"""

from edgesal.quant.fidelity import Budget
from edgesal.quant.images import CalibrationWarning, ImageSplit, load_split
from edgesal.quant.mixed import SearchOptions
from edgesal.quant.pipeline import QuantOptions, QuantResult, quantize
from edgesal.quant.report import Report

__all__ = [
    "Budget",
    "CalibrationWarning",
    "ImageSplit",
    "QuantOptions",
    "QuantResult",
    "Report",
    "SearchOptions",
    "load_split",
    "quantize",
]
