#!/usr/bin/env python3
"""Jetson: CSI camera through GStreamer (nvarguscamerasrc) -> onnxruntime TensorRT/CUDA -> web view.

Real device:  python3 jetson_saliency.py /opt/edgesal/models/model.sal.onnx \
                  --token-file /var/lib/edgesal/web.token
Simulation:   python3 jetson_saliency.py model.sal.onnx --simulate clip.mp4 --seconds 10
"""

from __future__ import annotations

import argparse
import sys

from edgesal.runtimes.simulation import run_example


def csi_pipeline(sensor: int = 0, width: int = 1280, height: int = 720, fps: int = 30) -> str:
    """GStreamer string for a CSI camera on the Argus stack, delivering BGR frames to OpenCV;
    ``drop=1 max-buffers=1`` keeps only the newest frame."""
    return (
        f"nvarguscamerasrc sensor-id={sensor} ! "
        f"video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1 ! "
        "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
        "appsink drop=1 max-buffers=1"
    )


def runtime_args(args: argparse.Namespace) -> list[str]:
    flags = ["run", args.model, *sum((["--fallback", f] for f in args.fallback), []),
             "--source", csi_pipeline(args.sensor), "--device", "tensorrt",
             "--trt-cache", args.trt_cache, "--serve", args.serve, "--temp-limit", "75",
             "--mem-limit", "1GB", "--records", args.records, "--display", "no",
             "--log-level", "WARNING"]  # fmt: skip
    if args.token_file:
        flags += ["--token-file", args.token_file]
    if args.simulate:
        flags[flags.index("--source") + 1] = args.simulate
        flags += ["--realtime", "--loop", "--dwell", "0.25"]
    return flags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="saliency model (.onnx)")
    parser.add_argument("--fallback", action="append", default=[], help="cheaper method model")
    parser.add_argument("--sensor", type=int, default=0, help="CSI sensor id")
    parser.add_argument("--trt-cache", default="/var/cache/edgesal/trt", help="TensorRT engines")
    parser.add_argument("--serve", default="0.0.0.0:8080", help="status page address")
    parser.add_argument(
        "--token-file", help="web view token, needed when --serve is not loopback (made if missing)"
    )
    parser.add_argument(
        "--records", default="/var/lib/edgesal/jetson.salrec", help=".salrec output"
    )
    parser.add_argument("--simulate", metavar="VIDEO", help="replay VIDEO as the camera, fake heat")
    parser.add_argument("--seconds", type=float, help="stop after this long")
    args = parser.parse_args(argv)
    return run_example(runtime_args(args), bool(args.simulate), args.seconds)


if __name__ == "__main__":
    sys.exit(main())
