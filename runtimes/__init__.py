"""edgesal device runtime: camera -> saliency model -> overlay, inside a temperature and memory
budget. Imports numpy, OpenCV and one inference backend only (onnxruntime or LiteRT).

Python API for robot code::

    from edgesal.runtimes import Pipeline
    pipe = Pipeline("model.sal.onnx")
    result = pipe.process(frame)   # result.label, .score, .saliency, .overlay, .check, .state
"""

from edgesal.runtimes.governor import Budget
from edgesal.runtimes.overlay import OverlayStyle
from edgesal.runtimes.pipeline import FrameResult, Pipeline, PipelineConfig
from edgesal.runtimes.selfcheck import CheckConfig

__all__ = ["Budget", "CheckConfig", "FrameResult", "OverlayStyle", "Pipeline", "PipelineConfig"]
