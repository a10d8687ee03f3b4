"""TFLite lowerings by op family; importing this package registers them all."""

from edgesal.converters.tflite.ops import (  # noqa: F401  (registration side effects)
    conv,
    elementwise,
    linear,
    normalization,
    pool,
    reduce,
    resize,
    shape,
)
from edgesal.converters.tflite.ops.registry import LOWERINGS

__all__ = ["LOWERINGS"]
