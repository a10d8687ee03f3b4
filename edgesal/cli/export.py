"""``edgesal export``: its flags (method parameters, tokens, ROI, runtime metadata) and run."""

from __future__ import annotations

import argparse

from edgesal.cli.args import (
    floats,
    ints,
    named_shape,
    positive_int,
    read_json_object,
    read_labels,
    shape_dims,
)
from edgesal.errors import InputError


def add_export(sub: argparse._SubParsersAction) -> None:
    """``edgesal export MODEL -o OUT``: flags from ExportOptions, MethodOptions and TokenOptions."""
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
    p.add_argument("--batch", type=positive_int, help="fix a symbolic batch dim (default 1)")
    p.add_argument(
        "--input-shape", type=shape_dims, help="fix symbolic input dims, e.g. 1,3,224,224"
    )
    p.add_argument(
        "--shape",
        type=named_shape,
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
        help="also output attention [N,L,T,T], attention_rollout and attention_gradient [N,T] "
        "(vision transformers: also on the patch grid, <name>_grid [N,H/p,W/p])",
    )
    g.add_argument(
        "--patch-map",
        action="store_true",
        help="vision transformers: patch_map [N,H/p,W/p], the gradient at the patch tokens, "
        "beside the image map (with --wrt the patch tokens: each [N,T] map also as "
        "<name>_grid)",
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
    return export_saliency(model, options, tokens)


def _add_runtime_metadata_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "runtime metadata (how runtimes prepare frames and name classes; zoo models carry it, "
        "other models need it from these flags, docs/runtime.md)"
    )
    g.add_argument("--mean", type=floats, metavar="M[,M,M]", help="per-channel mean")
    g.add_argument("--std", type=floats, metavar="S[,S,S]", help="per-channel std")
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


def _runtime_metadata(args) -> tuple[dict, list[str] | None]:
    """(preprocess fields, labels) that the export flags set."""
    keys = ("mean", "std", "color", "pixel_scale", "resize_shorter")
    preprocess = {key: getattr(args, key) for key in keys if getattr(args, key) is not None}
    return preprocess, read_labels(args.labels) if args.labels else None


def _add_roi_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("region of interest (docs/roi.md)")
    g.add_argument(
        "--roi",
        type=lambda t: ints(t, 4, "x0,y0,x1,y1"),
        metavar="X0,Y0,X1,Y1",
        help="map only this window of the input grid (half-open pixels); early layers run on a "
        "crop around it",
    )
    g.add_argument(
        "--roi-size",
        type=lambda t: ints(t, 2, "W,H"),
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
        "(bounds memory; 1 = one at a time; 0 = all at once; default: 8 for transformers, "
        "2 otherwise, as measured fastest)",
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
        for name in _all_methods(args, METHOD_NAMES):
            suffix = out.suffix or (".tflite" if args.format == "tflite" else ".onnx")
            path = out.with_name(f"{out.stem}.{name}{suffix}")
            _export_one(args, name, params, path)
        return 0
    _export_one(args, args.method, params, args.output)
    return 0


def _all_methods(args, names: tuple[str, ...]) -> tuple[str, ...]:
    """--method all: every method, or the token methods when the export takes the token path."""
    from edgesal.converters import load_model_any
    from edgesal.tokens.export import TOKEN_METHODS, is_integer_input

    if args.wrt or (args.input and is_integer_input(load_model_any(args.model), args.input)):
        return TOKEN_METHODS
    return names


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
        audio=read_json_object(args.audio_frontend, "--audio-frontend"),
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
