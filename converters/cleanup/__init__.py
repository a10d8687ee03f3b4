"""Graph cleanup after conversion: fewer, simpler operators for the gradient engine.

:func:`clean` runs constant folding, Identity/Dropout removal, BatchNormalization, per-channel
scale (Mul), bias-Add and zero-Pad folding into Conv, and Transpose merging/cancelling, then
re-checks the model.
"""

from __future__ import annotations

import onnx

from edgesal.converters.cleanup.fold import fold_constants
from edgesal.converters.cleanup.passes import (
    fold_batchnorm,
    fold_bias_add,
    fold_pad_into_conv,
    fold_scale_mul,
    merge_transposes,
    remove_identities,
)
from edgesal.onnx_io import check

PASSES = (
    fold_constants,
    remove_identities,
    fold_batchnorm,
    fold_scale_mul,
    fold_bias_add,
    fold_pad_into_conv,
    merge_transposes,
)


def clean(model: onnx.ModelProto, where: str = "converted model") -> dict[str, int]:
    """Run every pass in place until none changes anything; returns nodes removed per pass."""
    removed = {p.__name__: 0 for p in PASSES}
    changed = True
    while changed:
        changed = False
        for cleanup_pass in PASSES:
            count = cleanup_pass(model)
            removed[cleanup_pass.__name__] += count
            changed |= bool(count) and cleanup_pass is not fold_constants
    del model.graph.value_info[:]
    check(model, where)
    return removed
