"""Why int8 vanilla saliency keeps float forward weights: the weight-only int8 probe.

The 0.3x size target for int8 vanilla (issue 5) needs the forward pass's weights in int8. This
probe stores every Conv/Gemm weight of the fp32 vanilla export as per-output-channel symmetric
int8 (a DequantizeLinear in front of each; the backward pass reads the same dequantized weights,
so the map is the exact gradient of the weight-quantized network) while every activation stays
float, and scores its maps against the fp32 maps on the six built-in photos with the fidelity
report's own measures. If even this mildest int8 forward falls below the budget (Spearman 0.9,
top-10% IoU 0.7), no int8 forward pass can meet it. For scale, the same weights merely rounded to
float16 are scored too.
Usage: python benchmarks/probe_weight_only.py [--write]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine_info, write_section  # noqa: E402
from edgesal import metadata, zoo  # noqa: E402
from edgesal.eval.similarity import spearman, top_k_iou  # noqa: E402
from edgesal.export import ExportOptions, export_saliency  # noqa: E402
from edgesal.runtimes.contract import image_tensor  # noqa: E402

WEIGHT_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def weight_only_int8(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """``model`` with each float weight (rank >= 2) read by a conv or matrix product stored as
    per-channel int8 behind a DequantizeLinear; returns the model and how many were converted."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    weights = {i for n in graph.node if n.op_type in WEIGHT_OPS for i in n.input}
    kept, dequantize = [], []
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        if init.name not in weights or array.dtype != np.float32 or array.ndim < 2:
            kept.append(init)
            continue
        peak = np.abs(array.reshape(array.shape[0], -1)).max(axis=1)
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        shaped = scale.reshape(-1, *[1] * (array.ndim - 1))
        q = np.clip(np.round(array / shaped), -127, 127).astype(np.int8)
        kept += [
            numpy_helper.from_array(q, f"{init.name}/int8"),
            numpy_helper.from_array(scale, f"{init.name}/scale"),
        ]
        dequantize.append(
            helper.make_node(
                "DequantizeLinear", [f"{init.name}/int8", f"{init.name}/scale"], [init.name], axis=0
            )
        )
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = dequantize + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model, len(dequantize)


def fp16_rounded(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with the same weights rounded to float16 (and stored back as float32)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    weights = {i for n in model.graph.node if n.op_type in WEIGHT_OPS for i in n.input}
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if init.name in weights and array.dtype == np.float32 and array.ndim >= 2:
            rounded = array.astype(np.float16).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(rounded, init.name))
    return model


def run(model: onnx.ModelProto, inputs: list[np.ndarray]) -> list[tuple[int, np.ndarray]]:
    """(top-1 class, map) per input."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name, scores = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    results = [sess.run([scores, "saliency"], {name: x}) for x in inputs]
    return [(int(np.argmax(s)), m[0]) for s, m in results]


def probe(name: str) -> list[str]:
    forward = zoo.build(name, progress=False)
    pre = metadata.preprocess(metadata.read(forward), name)
    photos = zoo.photos()
    inputs = [image_tensor(photos[p], pre) for p in sorted(photos)]
    fp32 = export_saliency(forward, ExportOptions(method="vanilla"))
    int8, converted = weight_only_int8(fp32)
    reference, probed = run(fp32, inputs), run(int8, inputs)
    rows, scores = [], []
    for photo, (top_a, a), (top_b, b) in zip(sorted(photos), reference, probed, strict=True):
        scores.append((spearman(a, b), top_k_iou(a, b), top_a == top_b))
        rows.append(
            f"| {name} | {photo} | {scores[-1][0]:.3f} | {scores[-1][1]:.3f} | "
            f"{'yes' if scores[-1][2] else 'no'} |"
        )
    sizes = [len(m.SerializeToString()) / 1e6 for m in (fp32, int8)]
    mean = np.mean(scores, axis=0)
    rows.append(
        f"| {name} | **mean** ({converted} weights int8; {sizes[0]:.1f} -> {sizes[1]:.1f} MB, "
        f"{sizes[1] / sizes[0]:.2f}x) | **{mean[0]:.3f}** | **{mean[1]:.3f}** | "
        f"{int(sum(s[2] for s in scores))}/{len(scores)} |"
    )
    half = run(fp16_rounded(fp32), inputs)
    pairs = list(zip(reference, half, strict=True))
    rows.append(
        f"| {name} | mean with the weights only rounded to float16 | "
        f"{np.mean([spearman(a[1], b[1]) for a, b in pairs]):.3f} | "
        f"{np.mean([top_k_iou(a[1], b[1]) for a, b in pairs]):.3f} | "
        f"{sum(a[0] == b[0] for a, b in pairs)}/{len(pairs)} |"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    lines = [
        "## Weight-only int8 probe (`benchmarks/probe_weight_only.py`)",
        "",
        "Vanilla saliency with every Conv/Gemm weight stored as per-channel int8 and every "
        "activation float, against the fp32 maps (the fidelity report's Spearman and top-10% "
        "IoU; budget 0.9 / 0.7).",
        "",
        "| model | photo | Spearman | top-10% IoU | same top-1 |",
        "|---|---|---:|---:|---|",
    ]
    for name in zoo.MODELS:
        lines += probe(name)
    lines += ["", f"Machine: {machine_info()}"]
    body = "\n".join(lines)
    print(body)
    if args.write:
        write_section("weightonly", body)


if __name__ == "__main__":
    main()
