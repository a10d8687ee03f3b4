"""edgesal device runtime: camera -> saliency model -> overlay, inside a temperature and memory
budget. Imports numpy, OpenCV and one inference backend only (onnxruntime or LiteRT).

Python API for robot code::

    from runtimes import Pipeline
    pipe = Pipeline("model.sal.onnx")
    result = pipe.process(frame)   # result.label, .score, .saliency, .overlay, .check, .state
"""

from runtimes.governor import Budget
from runtimes.overlay import OverlayStyle
from runtimes.pipeline import FrameResult, Pipeline, PipelineConfig
from runtimes.selfcheck import CheckConfig

__all__ = ["Budget", "CheckConfig", "FrameResult", "OverlayStyle", "Pipeline", "PipelineConfig"]
