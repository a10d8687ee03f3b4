"""``edgesal quantize``: the int8 saliency model and its fidelity report from the command line.

``edgesal/cli/`` wires it with ``register(subparsers)``. Building the parser imports nothing
heavy (device installs have no onnx); its defaults are read from
:class:`~edgesal.quant.options.QuantOptions`, the one place they are set.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from edgesal.quant.options import GRADIENT_METHODS, Budget, QuantOptions, SearchOptions

FORMATS = ("onnx", "tflite")
EXIT_BUDGET_MISSED = 1


def register(subparsers) -> None:
    """Add the ``quantize`` subcommand to an argparse subparsers object."""
    d, s = QuantOptions(), SearchOptions()
    p = subparsers.add_parser(
        "quantize",
        help="int8 saliency model whose map stays faithful to the float map",
        description="Calibrate an edgesal saliency model (from 'edgesal export') for int8: "
        "forward activations by min/max, gradient tensors from their own statistics, the seed "
        "rescaled; keep the fewest nodes in float that meet --max-map-error on the calibration "
        "images; then measure the int8 map against the float map on held-out validation images "
        "(Spearman, top-10%% IoU, SSIM, top-1 agreement). Exit status 1 when the validation "
        "images miss the budget (the model and report are still written).",
    )
    p.add_argument("model", help="saliency model written by 'edgesal export' (.onnx)")
    p.add_argument(
        "--calib",
        required=True,
        help="calibration images: a folder of images, a video file, or 'builtin' (real photos "
        "shipped by scikit-image and scikit-learn, with a fixed split)",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="where to write the int8 model: ONNX QDQ, or TFLite (int8 builtins, the same "
        "scales and float nodes) for --format tflite / a .tflite suffix",
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        help="output format (default: from the --output suffix; .tflite means tflite)",
    )
    p.add_argument(
        "--max-map-error",
        default="0.1",
        help="1 - mean Spearman allowed (default 0.1; the top-10%% IoU floor stays 0.7), or "
        "floors as spearman=0.9,iou=0.7",
    )
    p.add_argument("--report", help="JSON report path (default: OUTPUT with .report.json appended)")
    g = p.add_argument_group("images")
    g.add_argument(
        "--validation",
        type=float,
        default=d.validation,
        help=f"fraction of a folder/video held out for validation ({d.validation})",
    )
    g.add_argument(
        "--augment",
        type=int,
        default=d.augment,
        help=f"flipped/cropped copies per calibration image ({d.augment})",
    )
    g.add_argument(
        "--max-frames",
        type=int,
        default=d.max_frames,
        help=f"frames read from a video ({d.max_frames})",
    )
    g.add_argument(
        "--max-calib",
        type=int,
        default=d.max_calibration,
        help=f"calibration samples used for the ranges, augmented ones included "
        f"({d.max_calibration})",
    )
    g.add_argument(
        "--tune",
        type=int,
        default=d.tune,
        help=f"calibration images the float-node search is measured on ({d.tune})",
    )
    c = p.add_argument_group("calibration and search")
    c.add_argument(
        "--grad-range",
        default=d.gradient_range,
        choices=GRADIENT_METHODS,
        help="range of gradient tensors: auto (lowest quantization error among percentiles, "
        "entropy and a grid), percentile, entropy, or minmax (default auto)",
    )
    c.add_argument(
        "--no-seed-rescale",
        action="store_true",
        help="do not rescale the backward seed to centre gradient magnitudes on 1",
    )
    c.add_argument(
        "--blocks",
        type=int,
        default=s.blocks,
        help=f"sensitivity blocks per region ({s.blocks})",
    )
    c.add_argument(
        "--max-evals",
        type=int,
        default=s.max_evaluations,
        help=f"cap on simulated evaluations while giving float nodes back ({s.max_evaluations})",
    )
    c.add_argument(
        "--margin",
        type=float,
        default=s.margin,
        help=f"extra fidelity asked on the tuning images ({s.margin})",
    )
    c.add_argument(
        "--threads", type=int, default=d.threads, help=f"onnxruntime threads ({d.threads})"
    )
    c.add_argument(
        "--latency-runs",
        type=int,
        default=d.latency_runs,
        help=f"profiled runs for the latency of each float node; 0 skips ({d.latency_runs})",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Quantize, write model and JSON report, print the report; 1 if the budget was missed."""
    from edgesal.errors import InputError
    from edgesal.quant.images import CalibrationWarning
    from edgesal.quant.pipeline import quantize

    output = Path(args.output)
    fmt = args.format or ("tflite" if output.suffix.lower() == ".tflite" else "onnx")
    for flag, value in (("--augment", args.augment), ("--latency-runs", args.latency_runs)):
        if value < 0:
            raise InputError(f"{flag} {value}: must be >= 0")
    for flag, value in (
        ("--max-calib", args.max_calib),
        ("--tune", args.tune),
        ("--blocks", args.blocks),
        ("--max-frames", args.max_frames),
        ("--threads", args.threads),
    ):
        if value < 1:
            raise InputError(f"{flag} {value}: must be >= 1")
    options = QuantOptions(
        calib=args.calib,
        budget=Budget.parse(args.max_map_error),
        validation=args.validation,
        augment=args.augment,
        max_frames=args.max_frames,
        max_calibration=args.max_calib,
        tune=args.tune,
        gradient_range=args.grad_range,
        seed_rescale=not args.no_seed_rescale,
        search=SearchOptions(args.blocks, args.max_evals, args.margin),
        threads=args.threads,
        latency_runs=args.latency_runs,
        progress=lambda text: print(f"edgesal: {text}", file=sys.stderr, flush=True),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CalibrationWarning)
        result = quantize(args.model, options)
    for w in caught:
        if issubclass(w.category, CalibrationWarning):
            print(f"edgesal: warning: {w.message}", file=sys.stderr)
    output.parent.mkdir(parents=True, exist_ok=True)
    sizes = {"float": Path(args.model).stat().st_size}
    if fmt == "tflite":
        from edgesal.converters.tflite.convert import to_tflite as float_tflite
        from edgesal.quant.tflite import to_tflite

        options.progress("lowering to int8 TFLite and measuring its maps")
        data, result = to_tflite(result, args.threads)
        output.write_bytes(data)
        sizes["float_tflite"] = len(float_tflite(result.source))  # what the int8 file replaces
    else:
        import onnx

        onnx.save(result.model, str(output))
    result.report.sizes = {**sizes, "int8": output.stat().st_size}
    report_path = (
        Path(args.report) if args.report else output.with_name(output.name + ".report.json")
    )
    result.report.save_json(report_path)
    print(result.report.format())
    print(f"wrote {output} and {report_path}")
    return 0 if result.report.meets_budget else EXIT_BUDGET_MISSED
