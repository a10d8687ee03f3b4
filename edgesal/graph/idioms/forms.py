"""Which form of the mask idiom a saved file carries, per the runtime it is exported for.

``edgesal export --for RUNTIME`` (:data:`RUNTIMES`):

- ``onnxruntime-cpu`` (default for .onnx files): masks as HardSigmoids of slope 2**100, which
  onnxruntime's x86 CPU kernels keep in their blocked (NCHWc) layout, so a plain
  ``ort.InferenceSession("m.sal.onnx")`` runs the fast form. Exact in float32 on any runtime
  (maps bit-identical to the generic form); NOT for float16 (TensorRT fp16, CUDA float16
  conversions), where 2**100 overflows. edgesal's own runtime, its TFLite converter and int8
  quantization turn it back into the generic form (:func:`portable`), exactly.
- ``generic``: the form the rules emit, ``Cast(And(Greater, Less))``, right in every precision.
- ``litert``: the generic form (what the TFLite converter reads); a .tflite output is always
  converted from it.
"""

from __future__ import annotations

import onnx

from edgesal.errors import InputError
from edgesal.runtimes.backends.onnx_masks import nchwc_masks, portable_masks

RUNTIMES = ("onnxruntime-cpu", "litert", "generic")


def for_runtime(model: onnx.ModelProto, runtime: str) -> onnx.ModelProto:
    """``model`` with its masks in the form that runs fastest on ``runtime`` (same maps)."""
    if runtime not in RUNTIMES:
        raise InputError(f"--for {runtime}: choose one of {', '.join(RUNTIMES)}")
    rewrite = nchwc_masks if runtime == "onnxruntime-cpu" else portable_masks
    return _rewritten(model, rewrite)


def portable(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with any blocked-layout masks back in the generic form (exact)."""
    return _rewritten(model, portable_masks)


def _rewritten(model: onnx.ModelProto, rewrite) -> onnx.ModelProto:
    raw = model.SerializeToString()
    new = rewrite(raw)
    return model if new == raw else onnx.load_from_string(new)
