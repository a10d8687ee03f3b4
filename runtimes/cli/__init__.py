"""``edgesal run`` and ``edgesal records``: the device runtime's command line.

``register(subparsers)`` adds both commands to an argparse parser (edgesal/cli/ calls it);
``python -m edgesal.runtimes`` offers the same commands without the rest of edgesal.
"""

from __future__ import annotations

import argparse

from edgesal.runtimes.cli.flags import RUN_HELP, add_run_arguments
from edgesal.runtimes.cli.records import RECORDS_HELP, cmd_records_extract, cmd_records_inspect
from edgesal.runtimes.cli.run import cmd_run


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``run`` and ``records`` to an argparse sub-command set."""
    run = subparsers.add_parser(
        "run",
        help="live saliency overlay from a camera, file or stream",
        description=RUN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(run)
    run.set_defaults(func=cmd_run)
    records = subparsers.add_parser(
        "records", help="read .salrec saliency records", description=RECORDS_HELP
    )
    sub = records.add_subparsers(dest="records_command", required=True, metavar="COMMAND")
    inspect = sub.add_parser(
        "inspect",
        help="summary of a records file (and its frames)",
        description="Print the stream headers, frame and map counts, "
        "self-check flags, governor events and any torn tail of FILE.",
    )
    inspect.add_argument("file", help=".salrec file")
    inspect.add_argument("--frames", action="store_true", help="also list every frame")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(func=cmd_records_inspect)
    extract = sub.add_parser(
        "extract",
        help="write the stored maps as images or arrays",
        description="Write each stored map of FILE to OUT as 16-bit PNG "
        "(value * 65535) or .npy (float32), named by frame index.",
    )
    extract.add_argument("file", help=".salrec file")
    extract.add_argument("out", help="output folder")
    extract.add_argument("--format", choices=["png", "npy"], default="png")
    extract.set_defaults(func=cmd_records_extract)


def main(argv: list[str] | None = None) -> int:
    """``python -m edgesal.runtimes``: run and records without the rest of edgesal."""
    parser = argparse.ArgumentParser(prog="python -m edgesal.runtimes", description=__doc__)
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return args.func(args)
