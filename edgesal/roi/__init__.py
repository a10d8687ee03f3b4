"""Region of interest: the saliency of a window, with the early layers recomputed on a crop.

:mod:`edgesal.roi.receptive` finds the receptive fields of the graph's local prefix;
:mod:`edgesal.roi.plan` chooses the split tensor and writes the cropped recomputation.
"""

from edgesal.roi.plan import ROI_INPUT, ROI_USED, RoiPlan, plan

__all__ = ["ROI_INPUT", "ROI_USED", "RoiPlan", "plan"]
