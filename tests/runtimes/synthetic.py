"""Tiny saliency models built with onnx.helper, shaped like what ``edgesal export`` writes.

Input ``image`` [1,3,S,S] float32 NCHW (or uint8 NHWC with preprocessing in the graph); a
"classifier" Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm to ``logits`` [1,C]; saliency
outputs computed in the graph from the input and normalised to [0, 1] by their maximum. Class 0
reads channel 0 (red after RGB conversion), so the red pixels are where class 0's evidence is.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CLASSES = 4
LABELS = ["red thing", "green thing", "blue thing", "grey thing"]


def _init(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _classifier(nodes: list, inits: list, image: str) -> None:
    """logits = Gemm(GAP(Relu(Conv1x1(image)))) with identity-like weights: class c ~ channel c."""
    conv = np.zeros((CLASSES, 3, 1, 1), np.float32)
    for c in range(3):
        conv[c, c] = 1.0
    conv[3] = 0.2
    inits += [
        _init("conv_w", conv),
        _init("fc_w", np.eye(CLASSES, dtype=np.float32) * 8.0),
        _init("fc_b", np.zeros(CLASSES, np.float32)),
    ]
    nodes += [
        helper.make_node("Conv", [image, "conv_w"], ["feat"]),
        helper.make_node("Relu", ["feat"], ["act"]),
        helper.make_node("GlobalAveragePool", ["act"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
    ]


def _normalized(nodes: list, inits: list, raw: str, out: str) -> None:
    """out = raw / (max(raw) + eps), raw [1,S,S] >= 0."""
    inits.append(_init(f"{out}_eps", np.array(1e-6, np.float32)))
    nodes += [
        helper.make_node("ReduceMax", [raw], [f"{out}_max"], keepdims=1),
        helper.make_node("Add", [f"{out}_max", f"{out}_eps"], [f"{out}_den"]),
        helper.make_node("Div", [raw, f"{out}_den"], [out]),
    ]


def _channel_saliency(nodes: list, inits: list, image: str, out: str, weights) -> None:
    """raw = |sum_c w_c * image_c| (a fixed per-method channel mix), normalised."""
    inits.append(_init(f"{out}_w", np.asarray(weights, np.float32).reshape(1, 3, 1, 1)))
    nodes += [
        helper.make_node("Mul", [image, f"{out}_w"], [f"{out}_mix"]),
        helper.make_node("ReduceSum", [f"{out}_mix", "axis1"], [f"{out}_sum"], keepdims=0),
        helper.make_node("Abs", [f"{out}_sum"], [f"{out}_abs"]),
    ]
    _normalized(nodes, inits, f"{out}_abs", out)


def build(
    path: str | Path,
    size: int = 64,
    methods: tuple[str, ...] = ("vanilla",),
    target_input: bool = False,
    in_graph: bool = False,
    metadata: dict | None = None,
    saliency: bool = True,
    unfaithful: bool = False,
) -> Path:
    """Write a synthetic saliency model; one method -> output ``saliency``, several ->
    ``saliency_<method>`` each. ``target_input`` adds int64 ``target`` [1] (the map then mixes
    the target's channel). ``unfaithful``: the map ignores the image (a fixed centre blob)."""
    nodes: list = []
    inits: list = [_init("axis1", np.array([1], np.int64))]
    inputs = []
    if in_graph:
        inputs.append(helper.make_tensor_value_info("image", TensorProto.UINT8, [1, size, size, 3]))
        inits.append(_init("scale", np.array(1 / 255, np.float32)))
        nodes += [
            helper.make_node("Cast", ["image"], ["image_f"], to=TensorProto.FLOAT),
            helper.make_node("Transpose", ["image_f"], ["image_t"], perm=[0, 3, 1, 2]),
            helper.make_node("Mul", ["image_t", "scale"], ["x"]),
        ]
    else:
        inputs.append(helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size]))
        nodes.append(helper.make_node("Identity", ["image"], ["x"]))
    _classifier(nodes, inits, "x")
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, CLASSES])]
    names = ["saliency"] if len(methods) == 1 else [f"saliency_{m}" for m in methods]
    if target_input:
        inputs.append(helper.make_tensor_value_info("target", TensorProto.INT64, [1]))
    for i, name in enumerate(names if saliency else []):
        if unfaithful:
            yy, xx = np.mgrid[0:size, 0:size]
            blob = np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (size * 2.0))
            inits.append(_init(f"{name}_blob", blob[None].astype(np.float32)))
            nodes.append(helper.make_node("Identity", [f"{name}_blob"], [name]))
        elif target_input:
            eye = np.eye(CLASSES, 3, dtype=np.float32)
            eye[3] = 1 / 3
            inits.append(_init(f"{name}_table", eye))
            nodes += [
                helper.make_node("Gather", [f"{name}_table", "target"], [f"{name}_w"], axis=0),
                helper.make_node("Reshape", [f"{name}_w", f"{name}_shape"], [f"{name}_w4"]),
                helper.make_node("Mul", ["x", f"{name}_w4"], [f"{name}_mix"]),
                helper.make_node(
                    "ReduceSum", [f"{name}_mix", "axis1"], [f"{name}_sum"], keepdims=0
                ),
                helper.make_node("Abs", [f"{name}_sum"], [f"{name}_abs"]),
            ]
            inits.append(_init(f"{name}_shape", np.array([1, 3, 1, 1], np.int64)))
            _normalized(nodes, inits, f"{name}_abs", name)
        else:
            _channel_saliency(nodes, inits, "x", name, np.roll([1.0, 0.1, 0.1], i))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, size, size]))
    graph = helper.make_graph(nodes, "synthetic", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {
        "version": "0.1.0",
        "method": methods[0],
        "target": "input" if target_input else "argmax",
        "input": "image",
        "layout": "NHWC" if in_graph else "NCHW",
        "labels": LABELS,
        "outputs": {"scores": "logits", **({"saliency": "saliency"} if len(names) == 1 else {})},
        "preprocess": {
            "size": [size, size],
            "color": "RGB",
            "in_graph": in_graph,
            "layout": "NHWC" if in_graph else "NCHW",
            "dtype": "uint8" if in_graph else "float32",
        },
        **(metadata or {}),
    }
    for key, value in meta.items():
        model.metadata_props.add(
            key="edgesal." + key, value=json.dumps(value) if not isinstance(value, str) else value
        )
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def colour_frames(count: int, size: tuple[int, int] = (96, 128)) -> list[np.ndarray]:
    """BGR frames: a moving red square on a dark background, then a green scene (a scene cut)."""
    height, width = size
    frames = []
    for i in range(count):
        frame = np.full((height, width, 3), 20, np.uint8)
        if i < count // 2:
            x = 10 + (i * 3) % (width - 40)
            frame[30:60, x : x + 30] = (0, 0, 230)  # BGR red
        else:
            frame[:, :] = (30, 200, 30)
        frames.append(frame)
    return frames


def write_video(path: str | Path, frames: list[np.ndarray], fps: float = 15.0) -> Path:
    """An MJPG .avi (always available in OpenCV builds) holding ``frames``."""
    import cv2

    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return Path(path)
