"""The flags of ``edgesal run``: sources, backend, preprocessing, overlay, budget governor,
self-check and outputs; every default a runtime dataclass holds is read from it."""

from __future__ import annotations

import argparse
import re

from edgesal.runtimes.backends.base import BackendOptions
from edgesal.runtimes.pipeline import PipelineConfig
from edgesal.runtimes.webauth import WebOptions

RUN_HELP = """\
Run a saliency model on a camera, video file, stream or image folder: every frame gets the
prediction and its saliency map drawn over it, inside a temperature and memory budget.

examples:
  edgesal run model.sal.onnx --source 0                     # USB camera, window overlay
  edgesal run model.sal.tflite --source libcamera --serve 127.0.0.1:8080 \\
      --temp-limit 70 --mem-limit 300MB
  edgesal run model.sal.onnx --source 0 --serve 0.0.0.0:8443 --token-file /etc/edgesal/token \\
      --tls-cert cert.pem --tls-key key.pem                 # network view: token + HTTPS
  edgesal run model.sal.onnx --source clip.mp4 --record out.mp4 --records out.salrec
  edgesal run kws.sal.onnx --source clip.wav --records out.salrec   # audio: spectrogram view
  edgesal run ig.sal.onnx --fallback vanilla.sal.onnx --fallback gradcam.sal.onnx --source 0 \\
      --temp-limit 70                                       # governor may switch methods

sources (--source): a camera index (0) or V4L2 device (/dev/video0); a video file; a folder
of images (name order); rtsp:// or http:// URL; a GStreamer pipeline (contains '!', e.g.
"nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280,height=720 ! nvvidconv !
video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1");
picamera2 (alias libcamera) for the Raspberry Pi camera. Audio models (edgesal.audio
metadata, docs/audio.md): a .wav file (another sample rate is resampled, and logged) or mic /
mic:DEVICE (needs the sounddevice package); each window gets the prediction and a time x
frequency map drawn over its spectrogram. Series and tabular models (--modality at export): a
.csv or .npy table, one row per time step (series, windows of the model's length) or per
sample (tabular); the map is drawn as a band under the series or as coloured bars.

models: MODEL and each --fallback take a path, a comma list or a folder; the methods they
hold (one per 'saliency' output, or several 'saliency_<method>' outputs) form the chain the
governor walks from first (preferred) to last (cheapest). --methods picks and orders them.

exit status: 0 done, 1 runtime error, 2 bad input (model, source, flag, port in use).
"""


def _size_bytes(text: str) -> int:
    """``300MB``, ``1.5G``, ``512k``, ``1000000`` -> bytes (binary multiples)."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([kmgt]?)i?b?\s*", text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 300MB, 1.5G)")
    scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[match.group(2)]
    return int(float(match.group(1)) * scale)


def _floats(count: int):
    def parse(text: str) -> tuple[float, ...]:
        values = tuple(float(v) for v in text.split(","))
        if len(values) != count:
            raise argparse.ArgumentTypeError(f"expected {count} comma-separated numbers: {text}")
        return values

    return parse


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in re.split(r"[,x]", text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected integers like 224,224: {text}") from exc


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a whole number: {text}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _words(text: str) -> list[str]:
    return [w.strip() for w in text.split(",") if w.strip()]


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The ``run`` flags; every default that a runtime dataclass holds is read from it."""
    backend, config, web = BackendOptions(), PipelineConfig(), WebOptions()
    overlay, budget, check = config.overlay, config.budget, config.selfcheck
    p.add_argument("model", help="saliency model (.onnx/.tflite), comma list, or folder")
    p.add_argument(
        "--fallback",
        action="append",
        default=[],
        metavar="MODEL",
        help="cheaper method model(s) for the governor, in order (repeatable)",
    )
    p.add_argument("--methods", type=_words, help="use and order these methods, e.g. ig,vanilla")
    p.add_argument(
        "--source",
        default="0",
        help="camera index, device, file, folder, URL, "
        "GStreamer pipeline or picamera2 (default: 0)",
    )
    p.add_argument("--capture-size", type=_ints, metavar="WxH", help="ask the camera for a size")
    p.add_argument(
        "--realtime",
        action="store_true",
        help="pace a file at its frame rate and "
        "let the newest frame win, like a camera (default: every frame, in order)",
    )
    p.add_argument(
        "--loop",
        action="store_true",
        help="replay a file or folder endlessly (simulates a camera; use with --realtime)",
    )
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    g = p.add_argument_group("backend")
    g.add_argument(
        "--device",
        default=backend.device,
        choices=["auto", "cpu", "cuda", "tensorrt"],
        help="onnxruntime execution provider; auto: TensorRT, CUDA, CPU (first that works)",
    )
    g.add_argument(
        "--threads",
        type=int,
        default=backend.threads,
        help=f"threads per inference call (default {backend.threads})",
    )
    g.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="frames in inference at once (default 1); on a small CPU '--workers 2 --threads 1' "
        "gives more fps than one call on 2 threads (each worker costs one call's memory)",
    )
    g.add_argument("--trt-cache", metavar="DIR", help="TensorRT engine cache folder")
    g = p.add_argument_group("preprocessing (overrides the model metadata)")
    g.add_argument("--input-size", type=_ints, metavar="H,W", help="model input grid")
    g.add_argument("--resize-shorter", type=int, metavar="N", help="resize shorter side, then crop")
    g.add_argument("--mean", type=_floats(3), metavar="R,G,B", help="per-channel mean")
    g.add_argument("--std", type=_floats(3), metavar="R,G,B", help="per-channel std")
    g.add_argument("--pixel-scale", type=float, help="divide pixels by this first (default 255)")
    g.add_argument("--color", choices=["RGB", "BGR"], help="channel order the model expects")
    g.add_argument("--labels", metavar="FILE", help="class names: text (one a line) or JSON list")
    g.add_argument(
        "--window-stride",
        type=float,
        metavar="N",
        help="audio models: seconds between window starts (default: metadata, else one window); "
        "series models: rows between window starts (default: one window)",
    )
    g.add_argument(
        "--no-resample",
        action="store_true",
        help="audio models: refuse a wav at another sample rate instead of resampling it",
    )
    g.add_argument(
        "--target-class",
        type=int,
        metavar="K",
        help="class to explain (models with a 'target' input; default: the top-1 "
        "of the previous frame)",
    )
    g = p.add_argument_group("overlay")
    g.add_argument(
        "--colormap",
        default=overlay.colormap,
        choices=["jet", "turbo", "inferno", "viridis", "hot"],
    )
    g.add_argument(
        "--alpha",
        type=float,
        default=overlay.alpha,
        help=f"colour map weight (default {overlay.alpha})",
    )
    g.add_argument(
        "--contour",
        type=float,
        default=overlay.contour,
        metavar="FRACTION",
        help="outline the top FRACTION most salient area, map smoothed first (0: off; default "
        f"{overlay.contour})",
    )
    g.add_argument("--no-text", action="store_true", help="no label/score text")
    g.add_argument(
        "--smooth",
        type=float,
        default=config.smooth,
        metavar="A",
        help=f"EMA weight of the previous map (0: off; default {config.smooth})",
    )
    g.add_argument(
        "--cut-threshold",
        type=float,
        default=config.cut_threshold,
        help="mean grey change (0-255) that counts as a scene cut "
        f"(default {config.cut_threshold:g})",
    )
    g = p.add_argument_group("budget governor")
    g.add_argument("--temp-limit", type=float, metavar="C", help="temperature limit in deg C")
    g.add_argument("--mem-limit", type=_size_bytes, metavar="SIZE", help="RSS limit, e.g. 300MB")
    g.add_argument(
        "--temp-hysteresis",
        type=float,
        default=budget.temp_hysteresis,
        help=f"deg C below the limit before stepping back (default {budget.temp_hysteresis:g})",
    )
    g.add_argument(
        "--mem-hysteresis",
        type=float,
        default=budget.mem_hysteresis,
        help="fraction below the memory limit before stepping back "
        f"(default {budget.mem_hysteresis})",
    )
    g.add_argument(
        "--dwell",
        type=float,
        default=budget.dwell,
        help=f"seconds between decisions (default {budget.dwell:g})",
    )
    g.add_argument(
        "--policies",
        type=_words,
        default=list(budget.policies),
        help=f"ordered policies (default {','.join(budget.policies)})",
    )
    g.add_argument(
        "--rate-steps",
        type=_ints,
        default=budget.rate_steps,
        help="map every k-th frame at each rate step "
        f"(default {','.join(map(str, budget.rate_steps))})",
    )
    g.add_argument(
        "--thermal-dir",
        default=config.thermal_dir,
        help=f"folder with thermal_zone*/temp (default {config.thermal_dir})",
    )
    g.add_argument(
        "--cgroup-root",
        metavar="DIR",
        help="cgroup folder with memory.max and memory.current (default: this process's cgroup)",
    )
    g = p.add_argument_group("counterfactual self-check")
    g.add_argument(
        "--selfcheck-every",
        type=int,
        default=check.every,
        metavar="N",
        help="check every N-th map (0: off)",
    )
    g.add_argument(
        "--selfcheck-fraction",
        type=float,
        default=check.fraction,
        help=f"fraction of most salient pixels masked (default {check.fraction})",
    )
    g.add_argument(
        "--selfcheck-min-drop",
        type=float,
        default=check.min_drop,
        help=f"relative score drop below which a map is unfaithful (default {check.min_drop})",
    )
    g = p.add_argument_group("outputs")
    g.add_argument(
        "--display",
        choices=["auto", "yes", "no"],
        default="auto",
        help="window output (auto: when a display and a GUI OpenCV exist)",
    )
    g.add_argument("--record", metavar="VIDEO", help="write the overlay video (.mp4, .avi, .mkv)")
    g.add_argument("--records", metavar="FILE", help="append saliency records (.salrec)")
    g.add_argument("--records-bits", type=int, default=8, choices=[8, 16], help="map precision")
    g.add_argument(
        "--fsync-every",
        type=int,
        default=0,
        metavar="N",
        help="force records to storage every N records (power-loss safety)",
    )
    g.add_argument(
        "--serve",
        metavar="[HOST:]PORT",
        help="HTTP status page + MJPEG stream (host defaults to 127.0.0.1; any other host, "
        "e.g. 0.0.0.0, needs --token-file)",
    )
    g.add_argument(
        "--token-file",
        metavar="FILE",
        help="web view token (Authorization: Bearer, or log in at /login); required beyond "
        "loopback; a missing FILE gets a new random 256-bit token, mode 0600",
    )
    g.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate chain")
    g.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    g.add_argument(
        "--max-clients",
        type=_positive,
        default=web.max_clients,
        metavar="N",
        help=f"MJPEG streams at once (default {web.max_clients}; more get 503)",
    )
    g.add_argument("--jpeg-quality", type=int, default=80, help="MJPEG quality (default 80)")
    g.add_argument("--summary-json", metavar="FILE", help="write the run summary as JSON")
    g.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
