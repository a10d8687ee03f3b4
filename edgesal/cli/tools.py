"""``edgesal bench``, ``demo`` and ``doctor`` (:mod:`edgesal.tools`)."""

from __future__ import annotations

import argparse
import json

from edgesal.cli.args import positive_int


def add_bench(sub: argparse._SubParsersAction) -> None:
    """``edgesal bench MODEL``: forward vs saliency, interleaved medians."""
    p = sub.add_parser(
        "bench",
        help="time the forward pass against the saliency model on onnxruntime",
        description="Export MODEL (ONNX file or zoo name) with each method and time forward vs "
        "saliency on onnxruntime CPU, fixed threads, medians.",
    )
    p.add_argument("model", help="ONNX model file or zoo model name")
    p.add_argument("--methods", default="vanilla", help="comma-separated methods")
    p.add_argument("--threads", type=positive_int, default=2, help="intra-op threads (2)")
    p.add_argument("--runs", type=positive_int, default=50, help="timed runs per model (50)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument(
        "--profile",
        action="store_true",
        help="also show where each saliency call spends its time (onnxruntime's profiler: "
        "kernel ms by forward / gradient / layout part and operator type)",
    )
    p.set_defaults(func=_run_bench)


def _run_bench(args) -> int:
    from edgesal.tools.bench import bench_model, format_profile, format_table

    rows = bench_model(args.model, args.methods.split(","), args.threads, args.runs, args.profile)
    print(format_table(rows))
    for row in rows:
        if "profile" in row:
            print(f"\n{row['variant']}, as `edgesal run` loads it: kernel time per call")
            print(format_profile(row["profile"]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


def add_demo(sub: argparse._SubParsersAction) -> None:
    """``edgesal demo``: zoo models, real photos, overlays."""
    p = sub.add_parser(
        "demo",
        help="build a zoo model, export saliency, run it on real photos, write overlays",
        description="The end-to-end demo behind 'make demo'.",
    )
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--models", default="mobilenet_v2,efficientnet_lite0", help="zoo models")
    p.add_argument("--methods", default="vanilla,smoothgrad,integrated,gradcam", help="methods")
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from edgesal.tools.demo import run_demo

    run_demo(args.out, args.models.split(","), args.methods.split(","))
    return 0


def add_doctor(sub: argparse._SubParsersAction) -> None:
    """``edgesal doctor MODEL``: per method, whether it exports and what it costs."""
    from edgesal.options import ExportOptions

    p = sub.add_parser(
        "doctor",
        help="which methods a model supports, and their FLOPs and memory",
        description="Export MODEL with every method and print, per method, whether it works and "
        "why not (operators without gradient rules, custom ops, fixed-batch rewrites), the "
        "saliency's estimated FLOPs and the bytes of activations the backward pass keeps.",
    )
    p.add_argument("model", help="input model: .onnx, .tflite, .keras or a SavedModel folder")
    p.add_argument("--target", default=ExportOptions.target, help="what to explain, as for export")
    p.add_argument("--input", help="input to explain (default: as export chooses)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.set_defaults(func=_run_doctor)


def _run_doctor(args) -> int:
    import json

    from edgesal.converters import load_model_any
    from edgesal.export import ExportOptions
    from edgesal.tools.doctor import as_dict, diagnose, format_diagnosis

    model = load_model_any(args.model)
    found = diagnose(model, ExportOptions(target=args.target, input=args.input))
    print(json.dumps(as_dict(found), indent=2) if args.json else format_diagnosis(found))
    return 0
