"""A tiny .tflite saliency model written with LiteRT's flatbuffer schema (no TensorFlow).

Input ``image`` [1,S,S,3] float32 NHWC; ``logits`` = FULLY_CONNECTED(MEAN(image, H and W));
``saliency`` = REDUCE_MAX(ABS(image), channels) [1,S,S]; the ``edgesal`` metadata entry holds the
contract as JSON, as docs/runtime.md specifies for TFLite models.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CLASSES = 4


def build(path: str | Path, size: int = 32) -> Path:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    buffers: list = [s.BufferT()]  # buffer 0: the empty sentinel

    def buffer(array: np.ndarray | None = None, raw: bytes | None = None) -> int:
        b = s.BufferT()
        data = raw if raw is not None else (array.tobytes() if array is not None else None)
        if data is not None:
            b.data = list(data)
        buffers.append(b)
        return len(buffers) - 1

    tensors: list = []

    def tensor(name: str, shape, dtype=s.TensorType.FLOAT32, data: np.ndarray | None = None) -> int:
        t = s.TensorT()
        t.name, t.shape, t.type = name, list(shape), dtype
        t.buffer = buffer(data) if data is not None else buffer()
        tensors.append(t)
        return len(tensors) - 1

    weights = np.eye(CLASSES, 3, dtype=np.float32) * 8.0
    image = tensor("image", [1, size, size, 3])
    hw = tensor("hw_axes", [2], s.TensorType.INT32, np.array([1, 2], np.int32))
    ch = tensor("channel_axis", [1], s.TensorType.INT32, np.array([3], np.int32))
    pooled = tensor("pooled", [1, 3])
    fc_w = tensor("fc_w", [CLASSES, 3], data=weights)
    fc_b = tensor("fc_b", [CLASSES], data=np.zeros(CLASSES, np.float32))
    logits = tensor("logits", [1, CLASSES])
    absolute = tensor("abs", [1, size, size, 3])
    saliency = tensor("saliency", [1, size, size])

    codes = [
        s.BuiltinOperator.MEAN,
        s.BuiltinOperator.FULLY_CONNECTED,
        s.BuiltinOperator.ABS,
        s.BuiltinOperator.REDUCE_MAX,
    ]
    opcodes = []
    for code in codes:
        oc = s.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
        opcodes.append(oc)

    def op(index: int, inputs: list[int], outputs: list[int], options=None, kind=0):
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = index, inputs, outputs
        if options is not None:
            o.builtinOptionsType, o.builtinOptions = kind, options
        return o

    reducer = s.ReducerOptionsT()
    reducer.keepDims = False
    fc = s.FullyConnectedOptionsT()
    ops = [
        op(0, [image, hw], [pooled], reducer, s.BuiltinOptions.ReducerOptions),
        op(1, [pooled, fc_w, fc_b], [logits], fc, s.BuiltinOptions.FullyConnectedOptions),
        op(2, [image], [absolute]),
        op(3, [absolute, ch], [saliency], reducer, s.BuiltinOptions.ReducerOptions),
    ]
    graph = s.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = (
        tensors,
        [image],
        [logits, saliency],
        ops,
    )
    meta = {
        "edgesal.method": "vanilla",
        "edgesal.input": "image",
        "edgesal.layout": "NHWC",
        "edgesal.labels": json.dumps(["red", "green", "blue", "grey"]),
        "edgesal.outputs": json.dumps({"scores": "logits", "saliency": "saliency"}),
        "edgesal.preprocess": json.dumps({"size": [size, size], "layout": "NHWC"}),
    }
    entry = s.MetadataT()
    entry.name, entry.buffer = "edgesal", buffer(raw=json.dumps(meta).encode())
    model = s.ModelT()
    model.version, model.description = 3, "edgesal synthetic test model"
    model.operatorCodes, model.subgraphs, model.buffers = opcodes, [graph], buffers
    model.metadata = [entry]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path = Path(path)
    path.write_bytes(bytes(builder.Output()))
    return path
