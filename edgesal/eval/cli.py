"""``edgesal eval`` and ``edgesal compare``: :func:`register` adds them to the edgesal CLI.

``python -m edgesal.eval eval|compare ...`` runs the same commands on their own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edgesal.errors import EdgesalError

EVAL_EXAMPLES = """examples:
  edgesal eval model.sal.onnx --images photos/ -o report/
  edgesal eval model.sal.onnx --images photos/ --boxes boxes.json -o report/
  edgesal eval model.sal.onnx --records device.salrec --images frames/ -o report/
  edgesal eval model.sal.onnx --images photos/ --engine ray --address auto -o report/
  edgesal eval text.sal.onnx --texts lines.txt --tokenizer tokenizer.json --sanity-texts 8 -o out/

report/ gets report.json (every number), report.html (self-contained, opens from disk) and the
PNG plots. A killed run started again with the same arguments resumes: finished images and
sanity-check steps are read back from report/.work/ instead of being computed again.

exit status: 0 done, 2 bad input (model, images, boxes, records, flag).
"""

COMPARE_EXAMPLES = """examples:
  edgesal compare a.sal.onnx a.sal.int8.onnx --images photos/ -o report/
  edgesal compare a.sal.onnx a.sal.tflite --images photos/ -o report/

Both models are run on every image; B's maps are compared with A's (Spearman, SSIM, top-k IoU)
and their top-1 predictions checked for agreement. A model with a 'target' input explains A's
predicted class. Either model may be a .tflite file written by 'edgesal export -o X.sal.tflite'
(run on ai-edge-litert, pip install 'edgesal[device-litert]'); each model gets the same crop in
its own layout and preprocessing, read from its edgesal metadata. Both must take the same input
size and score the same classes. exit status: 0 done, 2 bad input.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval`` and ``compare`` to an argparse subparsers object; ``args.func(args)`` runs
    the command and returns the exit code."""
    _add_eval(subparsers)
    _add_compare(subparsers)


def _floats(text: str) -> tuple[float, ...]:
    if text.strip().lower() in ("", "none", "off"):
        return ()
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers like 0.1,0.5,0.9") from None


def _names(text: str) -> tuple[str, ...]:
    if text.strip().lower() in ("", "none", "off"):
        return ()
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _add_eval(sub) -> None:
    from edgesal.eval.options import BASELINES, CONTROLS, EvalOptions

    d = EvalOptions()
    p = sub.add_parser(
        "eval",
        help="measure how faithful a saliency model's maps are (deletion, insertion, ROAD, "
        "pointing game, sanity checks, stability); writes an HTML+JSON report",
        description="Evaluate saliency model MODEL on images, or audit maps a device recorded:\n"
        "deletion/insertion curves and AUC (Petsiuk et al. 2018), ROAD (Rong et al. 2022),\n"
        "pointing game (Zhang et al. 2016), max-sensitivity (Yeh et al. 2019), sanity checks by\n"
        "model-parameter randomization and random logit (Adebayo et al. 2018, Sixt et al.\n"
        "2020) with a Sobel edge-detector control; every forward pass on onnxruntime.",
        epilog=EVAL_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="saliency model made by 'edgesal export' (.onnx)")
    p.add_argument("-o", "--output", required=True, help="report folder")
    data = p.add_argument_group("data")
    data.add_argument("--images", help="folder of images (jpg, png, ...)")
    data.add_argument(
        "--records",
        help="a device's .salrec file: checks it was recorded with MODEL and summarizes it; "
        "with --images (the frames the device saw, in name order) also compares the device's "
        "maps with this machine's and scores them",
    )
    data.add_argument(
        "--samples",
        help="series, tabular or audio models (exported with --modality): a .npy or .csv of "
        "[N, *input shape]; deletion/insertion over time steps, features or cells "
        "(docs/eval.md)",
    )
    data.add_argument(
        "--texts",
        help="token models (exported with --input input_ids --attention): a UTF-8 file, one text "
        "a line; deletion/insertion over tokens (docs/tokens.md); needs --tokenizer",
    )
    data.add_argument("--tokenizer", help="tokenizer.json for --texts")
    data.add_argument(
        "--baseline-token", type=int, help="--texts: id that replaces tokens (default [MASK])"
    )
    data.add_argument(
        "--boxes",
        help="object boxes for the pointing game: COCO JSON or {image: [x0,y0,x1,y1]}",
    )
    data.add_argument("--max-images", type=int, help="use only the first N images (by name)")
    m = p.add_argument_group("metrics")
    m.add_argument(
        "--steps", type=int, default=d.steps, help=f"deletion/insertion steps ({d.steps})"
    )
    m.add_argument(
        "--deletion-baseline",
        choices=BASELINES,
        default=d.deletion_baseline,
        help=f"what deleted pixels become ({d.deletion_baseline})",
    )
    m.add_argument(
        "--insertion-canvas",
        choices=BASELINES,
        default=d.insertion_canvas,
        help=f"the canvas pixels are inserted into ({d.insertion_canvas})",
    )
    m.add_argument("--batch", type=int, default=d.batch, help=f"forward batch ({d.batch})")
    m.add_argument(
        "--tolerance",
        type=float,
        default=d.tolerance,
        help=f"pointing game tolerance in input pixels ({d.tolerance:g})",
    )
    m.add_argument(
        "--road-fractions",
        type=_floats,
        default=d.road_fractions,
        help="ROAD removal fractions, or 'off' (default: 0.1,0.3,0.5,0.7,0.9)",
    )
    m.add_argument("--road-noise", type=float, default=d.road_noise, help="ROAD imputation noise")
    m.add_argument(
        "--sensitivity-samples",
        type=int,
        default=d.sensitivity_samples,
        help=f"max-sensitivity noise samples, 0 = off ({d.sensitivity_samples})",
    )
    m.add_argument(
        "--sensitivity-radius",
        type=float,
        default=d.sensitivity_radius,
        help=f"max-sensitivity noise radius, fraction of the value range ({d.sensitivity_radius})",
    )
    m.add_argument(
        "--controls",
        type=_names,
        default=d.controls,
        help=f"control maps scored like methods: {','.join(CONTROLS)} or 'off'",
    )
    s = p.add_argument_group("sanity checks")
    s.add_argument(
        "--sanity-images",
        type=int,
        default=d.sanity_images,
        help=f"images for the sanity checks, 0 = off ({d.sanity_images})",
    )
    s.add_argument(
        "--sanity-steps",
        default=d.sanity_steps,
        help="top-layer counts to randomize: log (1,2,4,..,all), every, or e.g. 1,3,all (log)",
    )
    s.add_argument(
        "--sanity-modes",
        type=_names,
        default=d.sanity_modes,
        help="cascading,independent (both)",
    )
    s.add_argument(
        "--sanity-threshold",
        type=float,
        default=d.sanity_threshold,
        help=f"pass when the mean similarity falls below this ({d.sanity_threshold})",
    )
    s.add_argument("--no-random-logit", action="store_true", help="skip the random-logit check")
    s.add_argument(
        "--sanity-texts",
        type=int,
        default=0,
        help="--texts: run the weight-randomization cascade on the first N texts (the network "
        "inside MODEL re-exported with its flags; --sanity-steps, --sanity-threshold), 0 = off (0)",
    )
    _add_run_flags(p)
    p.add_argument("--overlays", type=int, default=d.overlays, help="overlay PNGs in the report")
    p.set_defaults(func=run_eval)


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    from edgesal.eval.options import EvalOptions

    d = EvalOptions()
    r = p.add_argument_group("execution")
    r.add_argument(
        "--engine", choices=["local", "ray"], default="local", help="local (default) or ray"
    )
    r.add_argument("--address", help="Ray cluster address (auto: a running cluster)")
    r.add_argument(
        "--workers",
        type=int,
        help="worker processes / Ray actors (default: one per CPU); 0 with --engine local runs "
        "in this process",
    )
    r.add_argument(
        "--threads",
        type=int,
        default=d.threads,
        help=f"onnxruntime threads per worker ({d.threads})",
    )
    r.add_argument(
        "--seed", type=int, default=d.seed, help=f"seed of random maps and noise ({d.seed})"
    )
    r.add_argument("--fresh", action="store_true", help="ignore results of an earlier run")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")


def _options(args):
    from edgesal.eval.options import EvalOptions

    return EvalOptions(
        steps=args.steps,
        deletion_baseline=args.deletion_baseline,
        insertion_canvas=args.insertion_canvas,
        batch=args.batch,
        tolerance=args.tolerance,
        road_fractions=tuple(args.road_fractions),
        road_noise=args.road_noise,
        sensitivity_samples=args.sensitivity_samples,
        sensitivity_radius=args.sensitivity_radius,
        controls=tuple(args.controls),
        sanity_images=args.sanity_images,
        sanity_steps=args.sanity_steps,
        sanity_modes=tuple(args.sanity_modes),
        sanity_threshold=args.sanity_threshold,
        random_logit=not args.no_random_logit,
        seed=args.seed,
        threads=args.threads,
        overlays=args.overlays,
    )


def _engine(args):
    from edgesal.eval.engines import make_engine

    if args.workers is not None and args.workers < 0:
        from edgesal.errors import InputError

        raise InputError(f"--workers {args.workers}: must be >= 0")
    return make_engine(args.engine, args.workers, args.address)


def run_eval(args) -> int:
    from edgesal.errors import InputError
    from edgesal.eval.audit import evaluate
    from edgesal.imaging import read_folder

    if args.records:
        from edgesal.eval.records import audit_records

        result = audit_records(
            args.model,
            args.records,
            args.output,
            images=args.images,
            options=_options(args),
            engine=_engine(args),
            progress=not args.no_progress,
            resume=not args.fresh,
        )
        print(f"wrote {args.output}/report.html and report.json ({result['frames']} frames)")
        return 0
    if args.samples:
        from edgesal.eval.series import evaluate_samples

        report = evaluate_samples(
            args.model,
            args.samples,
            args.output,
            args.steps,
            args.deletion_baseline,
            args.insertion_canvas,
            args.seed,
            args.threads,
            args.max_images,
        )
        for name, entry in {**report["methods"], **report["controls"]}.items():
            print(
                f"{name}: deletion_auc {entry['deletion_auc']['mean']:.3f}  "
                f"insertion_auc {entry['insertion_auc']['mean']:.3f}"
            )
        print(f"wrote {args.output}/report.html and report.json ({len(report['samples'])} samples)")
        return 0
    if args.texts:
        from edgesal.eval.texts import run_texts

        return run_texts(args)
    if args.sanity_texts:
        raise InputError("--sanity-texts is for --texts (images: --sanity-images)")
    if not args.images:
        raise InputError(
            "give --images FOLDER (or --records FILE); --samples FILE for series, tabular and "
            "audio models"
        )
    images = read_folder(args.images, "--images", args.max_images)
    result = evaluate(
        args.model,
        images,
        args.output,
        _options(args),
        boxes=args.boxes,
        engine=_engine(args),
        progress=not args.no_progress,
        resume=not args.fresh,
    )
    _print_summary(result)
    print(f"wrote {args.output}/report.html and report.json")
    return 0


def _print_summary(result: dict) -> None:
    summary = result["summary"]
    for group in ("methods", "controls"):
        for name, entry in summary[group].items():
            parts = [f"{'control ' if group == 'controls' else ''}{name}:"]
            for key in ("deletion_auc", "insertion_auc", "road_morf_mean", "max_sensitivity"):
                if entry.get(key, {}).get("mean") is not None:
                    parts.append(f"{key} {entry[key]['mean']:.3f}")
            if entry.get("pointing", {}).get("accuracy") is not None:
                parts.append(f"pointing {entry['pointing']['accuracy']:.3f}")
            print("  ".join(parts))
    sanity = result.get("sanity") or {}
    for name, v in sanity.get("verdicts", {}).items():
        state = "pass" if v["passed"] else "FLAGGED"
        print(
            f"sanity {name}: {state}, Spearman after the full cascade {v['final_spearman']:.3f} "
            f"(threshold {v['threshold']})"
        )


def _add_compare(sub) -> None:
    from edgesal.eval.options import EvalOptions

    p = sub.add_parser(
        "compare",
        help="fidelity of one saliency model's maps to another's (float vs int8, ONNX vs "
        "TFLite, ...)",
        description="Run saliency models A and B (.onnx or .tflite) on the same images and\n"
        "measure how close B's maps are to A's: Spearman rank correlation, SSIM, top-k IoU,\n"
        "top-1 agreement (float vs int8, ONNX vs TFLite, device vs workstation).",
        epilog=COMPARE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_a", help="reference saliency model (.onnx or .tflite)")
    p.add_argument("model_b", help="saliency model to check against A (.onnx or .tflite)")
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("-o", "--output", required=True, help="report folder")
    p.add_argument(
        "--top-k", type=float, default=0.1, help="fraction of pixels for top-k IoU (0.1)"
    )
    p.add_argument("--max-images", type=int, help="use only the first N images (by name)")
    p.add_argument("--batch", type=int, default=EvalOptions.batch, help=argparse.SUPPRESS)
    _add_run_flags(p)
    p.set_defaults(func=run_compare)


def run_compare(args) -> int:
    from edgesal.eval.audit import compare
    from edgesal.eval.options import EvalOptions
    from edgesal.imaging import read_folder

    images = read_folder(args.images, "--images", args.max_images)
    options = EvalOptions(seed=args.seed, threads=args.threads, batch=args.batch)
    result = compare(
        args.model_a,
        args.model_b,
        images,
        args.output,
        options,
        top_k=args.top_k,
        engine=_engine(args),
        progress=not args.no_progress,
        resume=not args.fresh,
    )
    for method, entry in result["summary"]["methods"].items():
        means = {k: entry[k]["mean"] for k in ("spearman", "ssim", "top_k_iou")}
        print(f"{method}: " + "  ".join(f"{k} {v:.3f}" for k, v in means.items()))
    print(f"top-1 agreement {result['summary']['top1_agreement']:.3f}")
    print(f"wrote {args.output}/report.html and report.json")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edgesal.eval``: the two commands without the rest of the edgesal CLI."""
    parser = argparse.ArgumentParser(prog="python -m edgesal.eval")
    register(parser.add_subparsers(title="commands", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EdgesalError as exc:
        print(f"edgesal: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgesal: interrupted", file=sys.stderr)
        return 130
