"""End-to-end stream benchmark of the device runtime (`edgesal run` on a video file).

    python benchmarks/bench_stream.py MODEL.sal.onnx [--frames 300] [--threads 2] [--video V]

Measures, in a fresh process holding only the runtime (numpy, OpenCV, the backend):
capture (decode) + preprocessing + saliency model + overlay + JPEG encode of every frame of a
640x480 video, with the three stages on their own threads and ``--threads`` inference threads;
the model's own saliency latency (one call on one preprocessed frame, median of 50); the ratio
of end-to-end frame time to that latency; and the peak RSS. The video is made from the real
photos scikit-image ships (slow pans, so consecutive frames differ). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")


def make_video(path: Path, frames: int, size=(640, 480), fps: float = 30.0) -> Path:
    """Pans across scikit-image's photos at 640x480, ``frames`` frames of MJPG."""
    import cv2
    from skimage import data

    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    per_photo = max(1, frames // len(PHOTOS))
    written = 0
    for name in PHOTOS:
        photo = getattr(data, name)()
        photo = photo if photo.ndim == 3 else cv2.cvtColor(photo, cv2.COLOR_GRAY2RGB)
        photo = cv2.cvtColor(photo[..., :3], cv2.COLOR_RGB2BGR)
        scale = max(width * 1.25 / photo.shape[1], height * 1.25 / photo.shape[0])
        big = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        for i in range(per_photo):
            if written == frames:
                break
            t = i / max(per_photo - 1, 1)
            x = int(t * (big.shape[1] - width))
            y = int(t * (big.shape[0] - height))
            writer.write(big[y : y + height, x : x + width])
            written += 1
    writer.release()
    return path


def measure(model: str, video: str, threads: int) -> dict:
    """Runs in a fresh process: the runtime only."""
    import numpy as np

    from runtimes.backends import BackendOptions
    from runtimes.governor import peak_rss_bytes
    from runtimes.model import MethodChain
    from runtimes.pipeline import Pipeline, PipelineConfig
    from runtimes.runner import Runner
    from runtimes.server import FrameBoard
    from runtimes.sinks import BoardSink
    from runtimes.sources import open_source

    chain = MethodChain.load([model], BackendOptions(threads=threads))
    variant = chain[0]
    board = FrameBoard(quality=80)
    sink = BoardSink(board, always_encode=True)
    runner = Runner(Pipeline(chain, PipelineConfig()), open_source(video), [sink])
    summary = runner.run(handle_signals=False)
    peak_rss = peak_rss_bytes()  # the stream's high-water mark, before the timing loops below
    first = next(iter(open_source(video))).image
    tensor, _, _ = variant.preprocessor(first)
    for _ in range(5):
        variant.run(tensor, None)
    model_times = []
    for _ in range(50):
        start = time.perf_counter()
        variant.run(tensor, None)
        model_times.append(time.perf_counter() - start)
    forward_times = []
    for _ in range(30):
        start = time.perf_counter()
        variant.run(tensor, None, want_map=False)
        forward_times.append(time.perf_counter() - start)
    frame_ms = 1000.0 * summary.seconds / summary.frames
    saliency_ms = 1000.0 * float(np.median(model_times))
    return {
        "model": Path(model).name,
        "method": variant.method,
        "backend": variant.backend.name,
        "threads": threads,
        "frames": summary.frames,
        "fps": summary.frames / summary.seconds,
        "frame_ms": frame_ms,
        "saliency_ms": saliency_ms,
        "forward_ms": 1000.0 * float(np.median(forward_times)),
        "ratio": frame_ms / saliency_ms,
        "latency_p50_ms": summary.latency_ms_p50,
        "latency_p95_ms": summary.latency_ms_p95,
        "peak_rss_mb": peak_rss / 2**20,
    }


def table(result: dict) -> str:
    rows = [
        ("model", f"{result['model']} ({result['method']}, {result['backend']})"),
        ("inference threads", result["threads"]),
        ("frames (640x480 file)", result["frames"]),
        ("end-to-end fps (capture+saliency+overlay+JPEG)", f"{result['fps']:.1f}"),
        ("end-to-end frame time", f"{result['frame_ms']:.2f} ms"),
        ("model saliency latency (median)", f"{result['saliency_ms']:.2f} ms"),
        ("model forward-only latency (pruned graph)", f"{result['forward_ms']:.2f} ms"),
        ("frame time / saliency latency", f"{result['ratio']:.2f}x"),
        (
            "capture-to-output latency p50 / p95",
            f"{result['latency_p50_ms']:.1f} / {result['latency_p95_ms']:.1f} ms",
        ),
        ("peak RSS", f"{result['peak_rss_mb']:.0f} MB"),
    ]
    lines = ["| measure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="saliency model (.onnx or .tflite), e.g. MobileNetV2 vanilla")
    parser.add_argument("--video", help="640x480 video (default: made from scikit-image photos)")
    parser.add_argument("--frames", type=int, default=300, help="frames in the generated video")
    parser.add_argument("--threads", type=int, default=2, help="inference threads (default 2)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.model, args.video, args.threads)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        video = args.video or str(make_video(Path(tmp) / "photos.avi", args.frames))
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                args.model,
                "--video",
                video,
                "--threads",
                str(args.threads),
                "--measure",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return proc.returncode
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
