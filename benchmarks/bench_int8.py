"""int8 vs fp32 saliency models: latency, file size, map fidelity (onnxruntime CPU).

For each zoo model and method: export the fp32 saliency model, quantize it with
``edgesal.quant.quantize`` on the built-in photos (default budget), and time both models
interleaved (wall clock, 2 threads) and by process CPU time (1 thread, no spinning: less
disturbed by other load). The forward-only model is timed too: methods whose forward pass must
stay float (see docs/quantization.md) cannot go below it. The naive
``onnxruntime.quantization.quantize_static`` defaults are scored on the same validation images.
With ``--tflite`` the fp32 export and the int8 model lowered from the same QDQ model
(``edgesal quantize --format tflite``) are also timed on ai-edge-litert (XNNPACK, 2 threads,
interleaved) and their file sizes compared.
Usage: python benchmarks/bench_int8.py [--runs 30] [--methods vanilla,gradcam] [--tflite] [--write]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine_info, write_section  # noqa: E402
from edgesal import metadata, zoo  # noqa: E402
from edgesal.eval.similarity import spearman  # noqa: E402
from edgesal.export import ExportOptions, export_saliency  # noqa: E402
from edgesal.methods import MethodOptions  # noqa: E402
from edgesal.quant import QuantOptions, load_split, quantize  # noqa: E402
from edgesal.quant.images import model_inputs  # noqa: E402
from edgesal.tools.bench import interleaved_medians  # noqa: E402


def session(model: onnx.ModelProto, threads: int, spinning: bool = True) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])


def cpu_ms(model: onnx.ModelProto, feed: dict, runs: int) -> float:
    """Median process CPU milliseconds per run, one thread, spinning off."""
    sess = session(model, 1, spinning=False)
    run = {"cpu": lambda: sess.run(None, feed)}
    return interleaved_medians(run, runs, warmup=3, clock=time.process_time, settle=0.0)["cpu"]


def naive_spearman(model: onnx.ModelProto, split, pre, image: str) -> float:
    """Mean validation Spearman of plain quantize_static (QDQ, int8, MinMax, per tensor)."""
    from onnxruntime.quantization import quantize_static

    calibration = [{image: x} for x in model_inputs(split.calibration[:16], pre)]

    class Reader:
        def __init__(self):
            self.items = iter(calibration)

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "fp32.onnx", Path(folder) / "naive.onnx"
        onnx.save(model, str(source))
        quantize_static(str(source), str(target), Reader())
        naive = onnx.load(str(target))
    reference, quantized = session(model, 2), session(naive, 2)
    scores = []
    for x in model_inputs(split.validation, pre):
        want = reference.run(["saliency"], {image: x})[0]
        got = quantized.run(["saliency"], {image: x})[0]
        scores.append(spearman(want, got))
    return float(np.mean(scores))


def bench(name: str, method: str, args) -> dict:
    forward = zoo.build(name, progress=False)
    fp32 = export_saliency(
        forward, ExportOptions(method=method, params=MethodOptions(steps=args.steps))
    )
    split = load_split("builtin")
    result = quantize(fp32, QuantOptions(calib="builtin", latency_runs=0), split)
    int8 = result.model
    pre = metadata.preprocess(metadata.read(fp32), "fp32")
    x = model_inputs(split.validation[:1], pre)[0]
    feed = {"image": x}
    sessions = {
        "forward": session(forward, args.threads),
        "fp32": session(fp32, args.threads),
        "int8": session(int8, args.threads),
    }
    wall = interleaved_medians(
        {k: (lambda s=s: s.run(None, feed)) for k, s in sessions.items()}, args.runs
    )
    cpu = {
        k: cpu_ms(m, feed, args.runs)
        for k, m in (("forward", forward), ("fp32", fp32), ("int8", int8))
    }
    valid = result.report.summary("validation")
    tflite = tflite_row(fp32, result, x, args) if args.tflite else None
    return {
        "tflite": tflite,
        "model": name,
        "method": method,
        "float_nodes": len(result.kept),
        "int8_nodes": result.report.quantized_nodes,
        "spearman": valid.spearman,
        "iou": valid.top10_iou,
        "top1": valid.top1_agreement,
        "meets_budget": result.report.meets_budget,
        "naive_spearman": naive_spearman(fp32, split, pre, "image"),
        "wall_ms": wall,
        "cpu_ms": cpu,
        "fp32_bytes": len(fp32.SerializeToString()),
        "int8_bytes": len(int8.SerializeToString()),
    }


def tflite_row(fp32: onnx.ModelProto, result, x: np.ndarray, args) -> dict:
    """fp32 and int8 TFLite latency (ai-edge-litert, interleaved wall clock), sizes, and the
    int8 TFLite map's validation means."""
    from edgesal.converters.tflite.convert import to_tflite
    from edgesal.quant.tflite import interpreter
    from edgesal.quant.tflite import to_tflite as int8_tflite

    files = {"fp32": to_tflite(fp32)}
    files["int8"], measured = int8_tflite(result, args.threads)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    fns = {}
    for kind, data in files.items():
        it = interpreter(data, args.threads)
        index = it.get_input_details()[0]["index"]

        def run(it=it, index=index):
            it.set_tensor(index, nhwc)
            it.invoke()

        fns[kind] = run
    valid = measured.report.summary("validation")
    return {
        "wall_ms": interleaved_medians(fns, args.runs),
        "bytes": {k: len(v) for k, v in files.items()},
        "spearman": valid.spearman,
        "iou": valid.top10_iou,
    }


def tflite_table(rows: list[dict]) -> str:
    lines = [
        "| model | method | TFLite val Spearman | val IoU | fp32 ms | int8 ms | int8/fp32 | "
        "fp32 MB | int8 MB | size |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["tflite"]
        w, b = t["wall_ms"], t["bytes"]
        lines.append(
            f"| {r['model']} | {r['method']} | {t['spearman']:.3f} | {t['iou']:.3f} | "
            f"{w['fp32']:.2f} | {w['int8']:.2f} | {w['int8'] / w['fp32']:.2f}x | "
            f"{b['fp32'] / 1e6:.1f} | {b['int8'] / 1e6:.1f} | {b['int8'] / b['fp32']:.2f}x |"
        )
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    lines = [
        "| model | method | float nodes | val Spearman (naive) | val IoU | forward ms | fp32 ms | "
        "int8 ms | int8/fp32 | CPU fp32 ms | CPU int8 ms | CPU int8/fp32 | fp32 MB | int8 MB | "
        "size |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        w, c = r["wall_ms"], r["cpu_ms"]
        lines.append(
            f"| {r['model']} | {r['method']} | {r['float_nodes']}/"
            f"{r['float_nodes'] + r['int8_nodes']} | {r['spearman']:.3f} "
            f"({r['naive_spearman']:.3f}) | {r['iou']:.3f} | {w['forward']:.2f} | "
            f"{w['fp32']:.2f} | {w['int8']:.2f} | {w['int8'] / w['fp32']:.2f}x | "
            f"{c['fp32']:.2f} | {c['int8']:.2f} | {c['int8'] / c['fp32']:.2f}x | "
            f"{r['fp32_bytes'] / 1e6:.1f} | {r['int8_bytes'] / 1e6:.1f} | "
            f"{r['int8_bytes'] / r['fp32_bytes']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="mobilenet_v2,efficientnet_lite0")
    parser.add_argument("--methods", default="vanilla,gradcam,integrated")
    parser.add_argument("--steps", type=int, default=8, help="integrated-gradients steps")
    parser.add_argument("--tflite", action="store_true", help="also time the TFLite files")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    rows = [
        bench(model, method, args)
        for model in args.models.split(",")
        for method in args.methods.split(",")
    ]
    body = (
        "## int8 saliency models (`benchmarks/bench_int8.py`)\n\n"
        f"Machine: {machine_info()}. One run: onnxruntime CPU, 1x3x224x224, wall clock = median "
        f"of {args.runs} interleaved runs with {args.threads} threads; CPU = median process CPU "
        "time, 1 thread, spinning off. int8 = `edgesal quantize --calib builtin` at the default "
        "budget (validation: the 4 held-out photos; 'naive' = plain `quantize_static` defaults "
        f"on the same images). Integrated gradients with {args.steps} steps. Float nodes: "
        "nodes the search kept float / all quantizable nodes.\n\n"
        f"{table(rows)}\n"
    )
    if args.tflite:
        body += (
            "\nTFLite (ai-edge-litert, XNNPACK, 1x224x224x3, median of "
            f"{args.runs} interleaved runs with {args.threads} threads): the fp32 export against "
            "the int8 file lowered from the same QDQ model (`--format tflite`); Spearman and IoU "
            "of the TFLite int8 map on the 4 held-out photos.\n\n"
            f"{tflite_table(rows)}\n"
        )
    print(body)
    print(json.dumps(rows, indent=2))
    if args.write:
        write_section("int8", body)


if __name__ == "__main__":
    main()
