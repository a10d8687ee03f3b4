"""``edgesal export``: append a saliency subgraph so one inference call returns the map too.

:mod:`edgesal.export.pipeline` fixes the input shapes, seeds the gradient at the target
(:mod:`edgesal.export.targets`), appends the method's graph, reduces and normalizes the map
(:mod:`edgesal.export.postprocess`) and writes the metadata runtimes read, detector boxes
included (:mod:`edgesal.export.boxes`). The options are onnx-free, in :mod:`edgesal.options`.
"""

from edgesal.export.pipeline import export_saliency, fix_input_shape, save
from edgesal.options import ExportOptions

__all__ = ["ExportOptions", "export_saliency", "fix_input_shape", "save"]
