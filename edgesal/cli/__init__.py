"""The ``edgesal`` command line: export, zoo, bench, demo, info, ops; run and records on devices.

One module per family of commands: :mod:`.export` (``export``), :mod:`.models` (``convert``,
``zoo``, ``info``, ``ops``), :mod:`.tools` (``bench``, ``demo``, ``doctor``); the shared
argument types are in :mod:`.args`. ``quantize``, ``eval``/``compare``, ``explain-text`` and
the device's ``run``/``records`` register themselves from their own packages.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edgesal.cli.export import add_export
from edgesal.cli.models import add_convert, add_info, add_ops, add_zoo
from edgesal.cli.tools import add_bench, add_demo, add_doctor
from edgesal.errors import EdgesalError

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
    add_export(sub)
    _add_quantize(sub)
    add_convert(sub)
    add_zoo(sub)
    add_bench(sub)
    add_demo(sub)
    add_info(sub)
    add_doctor(sub)
    add_ops(sub)
    _add_eval_commands(sub)
    _add_explain_text(sub)
    _add_runtime_commands(sub)
    return parser


def _add_explain_text(sub) -> None:
    from edgesal.tokens.explain import add_parser

    add_parser(sub)


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
