#!/usr/bin/env python3
"""Raspberry Pi: Pi camera (Picamera2/libcamera) -> LiteRT saliency -> web view, inside 70 C.

Real device:  python3 pi_saliency.py /opt/edgesal/models/model.sal.tflite \
                  --token-file /var/lib/edgesal/web.token
Simulation:   python3 pi_saliency.py model.sal.onnx --simulate clip.mp4 --seconds 10
(the simulation replays a video file as the camera and heats a fake thermal zone past the limit,
so the governor throttles and recovers; CI runs it).
"""

from __future__ import annotations

import argparse
import sys

from edgesal.runtimes.simulation import run_example


def runtime_args(args: argparse.Namespace) -> list[str]:
    """The ``edgesal run`` flags this device uses."""
    flags = ["run", args.model, *sum((["--fallback", f] for f in args.fallback), []),
             "--source", "picamera2", "--capture-size", "640x480",
             "--threads", "4", "--serve", args.serve,
             "--temp-limit", "70", "--mem-limit", "300MB",
             "--records", args.records, "--display", "no", "--log-level", "WARNING"]  # fmt: skip
    if args.token_file:
        flags += ["--token-file", args.token_file]
    if args.simulate:
        flags[flags.index("picamera2")] = args.simulate
        flags += ["--realtime", "--loop", "--dwell", "0.25", "--threads", "2"]
    return flags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="saliency model (.tflite on the Pi; .onnx works too)")
    parser.add_argument("--fallback", action="append", default=[], help="cheaper method model")
    parser.add_argument("--serve", default="0.0.0.0:8080", help="status page address")
    parser.add_argument(
        "--token-file", help="web view token, needed when --serve is not loopback (made if missing)"
    )
    parser.add_argument("--records", default="/var/lib/edgesal/pi.salrec", help=".salrec output")
    parser.add_argument("--simulate", metavar="VIDEO", help="replay VIDEO as the camera, fake heat")
    parser.add_argument("--seconds", type=float, help="stop after this long")
    args = parser.parse_args(argv)
    return run_example(runtime_args(args), bool(args.simulate), args.seconds)


if __name__ == "__main__":
    sys.exit(main())
