"""TFLite: forward pass of a zoo network vs its in-graph saliency model, both as converted by
``converters.to_tflite`` and run by ai-edge-litert with XNNPACK (2 threads by default).

    python benchmarks/bench_tflite.py [--methods vanilla,gradcam] [--runs 50] [--write]

Prints a markdown table; ``--write`` also replaces the ``tflite`` section of BENCHMARKS.md.
Target: the vanilla saliency model within 2.2x the forward model.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import interleaved_medians, machine_info, write_section  # noqa: E402
from converters import to_tflite  # noqa: E402
from edgesal import zoo  # noqa: E402
from edgesal.export import ExportOptions, export_saliency  # noqa: E402

MODELS = ("mobilenet_v2", "efficientnet_lite0")
TARGET = 2.2


def interpreter(data: bytes, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data, num_threads=threads)
    it.allocate_tensors()
    (image,) = it.get_input_details()
    it.set_tensor(image["index"], np.random.default_rng(0).random(image["shape"], np.float32))
    return it


def measure(name: str, methods: list[str], threads: int, runs: int) -> list[dict]:
    model = zoo.build(name, size=224, progress=False)
    models = {"forward": to_tflite(model)}
    for method in methods:
        models[method] = to_tflite(export_saliency(model, ExportOptions(method=method)))
    calls = {key: interpreter(data, threads).invoke for key, data in models.items()}
    medians = interleaved_medians(calls, runs=runs)
    forward = medians["forward"]
    return [
        {
            "model": name,
            "method": method,
            "forward_ms": forward,
            "saliency_ms": medians[method],
            "ratio": medians[method] / forward,
            "mb": len(models[method]) / 1e6,
        }
        for method in methods
    ]


def load_average() -> str:
    """The 1-minute load average (other jobs share the cores and inflate the times)."""
    return f"load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "load unknown"


def table(rows: list[dict], threads: int, load: str) -> str:
    lines = [
        f"TFLite (ai-edge-litert, XNNPACK, {threads} threads), 1x224x224x3 float32; "
        f"median of interleaved runs; target: vanilla <= {TARGET}x forward.",
        "",
        "| model | method | TFLite forward ms | TFLite saliency ms | ratio | .tflite MB |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['method']} | {r['forward_ms']:.2f} | {r['saliency_ms']:.2f} "
            f"| {r['ratio']:.2f}x | {r['mb']:.1f} |"
        )
    lines += ["", f"Machine: {machine_info()}, {platform.machine()}; {load}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="vanilla", help="comma list (default: vanilla)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    before = load_average()
    rows = [row for name in MODELS for row in measure(name, methods, args.threads, args.runs)]
    body = table(rows, args.threads, f"{before} before the runs, {load_average()} after")
    print(body)
    if args.write:
        write_section("tflite", body)


if __name__ == "__main__":
    main()
