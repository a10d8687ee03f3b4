"""``edgesal run`` and ``edgesal records``: the device runtime's command line.

``register(subparsers)`` adds both commands to an argparse parser (edgesal/cli.py calls it);
``python -m edgesal.runtimes`` offers the same commands without the rest of edgesal.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path

import numpy as np

from edgesal.runtimes.backends.base import BackendOptions
from edgesal.runtimes.contract import read_labels
from edgesal.runtimes.errors import DeviceError
from edgesal.runtimes.governor import Budget
from edgesal.runtimes.heap import limit_malloc_arenas
from edgesal.runtimes.overlay import OverlayStyle
from edgesal.runtimes.pipeline import PipelineConfig
from edgesal.runtimes.selfcheck import CheckConfig
from edgesal.runtimes.webauth import WebOptions, check_exposure, web_options

log = logging.getLogger("runtimes")

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

RECORDS_HELP = """\
Read .salrec saliency records (written by `edgesal run --records`) without the model.
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


def _overrides(args: argparse.Namespace) -> dict:
    values = {
        "size": args.input_size,
        "resize_shorter": args.resize_shorter,
        "mean": args.mean,
        "std": args.std,
        "pixel_scale": args.pixel_scale,
        "color": args.color,
    }
    overrides = {k: v for k, v in values.items() if v is not None}
    if args.input_size is not None and len(args.input_size) != 2:
        raise DeviceError(f"--input-size {args.input_size}: expected H,W")
    if args.labels:
        overrides["labels"] = read_labels(args.labels)
    return overrides


def _web_options(args: argparse.Namespace):
    """The web view's token, TLS and limits, checked before the model loads (fails fast)."""
    if not args.serve:
        given = [f for f in ("token_file", "tls_cert", "tls_key") if getattr(args, f)]
        if given:
            raise DeviceError(f"--{given[0].replace('_', '-')} needs --serve")
        return None
    web = web_options(args.token_file, args.tls_cert, args.tls_key, args.max_clients)
    check_exposure(args.serve, web)
    return web


def build_runner(args: argparse.Namespace):
    """The pipeline, source, sinks and server a ``run`` command line asks for."""
    from edgesal.runtimes.audio_sources import is_audio_spec, open_audio_source
    from edgesal.runtimes.errors import SourceError
    from edgesal.runtimes.model import MethodChain
    from edgesal.runtimes.pipeline import Pipeline
    from edgesal.runtimes.progress import ProgressBar
    from edgesal.runtimes.runner import Runner
    from edgesal.runtimes.signal_pipeline import (
        SignalPipeline,
        SignalRecordsSink,
        signal_kind,
        stream_header,
    )
    from edgesal.runtimes.sinks import (
        BoardSink,
        RecordsSink,
        VideoSink,
        WindowSink,
        display_available,
        file_sha256,
    )
    from edgesal.runtimes.sources import open_source
    from edgesal.runtimes.table_sources import is_table_spec, open_table_source

    web = _web_options(args)
    backend = BackendOptions(args.threads, args.device, args.trt_cache)
    chain = MethodChain.load([args.model, *args.fallback], backend, args.methods, _overrides(args))
    budget = Budget(
        temp_limit=args.temp_limit,
        mem_limit=args.mem_limit,
        temp_hysteresis=args.temp_hysteresis,
        mem_hysteresis=args.mem_hysteresis,
        dwell=args.dwell,
        rate_steps=tuple(args.rate_steps),
        policies=tuple(args.policies),
    )
    config = PipelineConfig(
        smooth=args.smooth,
        cut_threshold=args.cut_threshold,
        overlay=OverlayStyle(args.colormap, args.alpha, args.contour, not args.no_text),
        selfcheck=CheckConfig(
            args.selfcheck_every, args.selfcheck_fraction, args.selfcheck_min_drop
        ),
        budget=budget,
        thermal_dir=args.thermal_dir,
        cgroup_root=args.cgroup_root,
        target_class=args.target_class,
    )
    kind = signal_kind(chain)
    try:
        pipeline = (
            SignalPipeline(chain, config, args.window_stride) if kind else Pipeline(chain, config)
        )
    except ValueError as exc:
        raise DeviceError(str(exc)) from exc
    size = tuple(args.capture_size) if args.capture_size else None
    if kind == "audio":
        source = open_audio_source(args.source, pipeline.windowing, not args.no_resample, args.loop)
    elif kind:
        columns = pipeline.input.columns
        source = open_table_source(args.source, pipeline.windowing, columns, args.loop)
    elif is_audio_spec(args.source) or is_table_spec(args.source):
        raise SourceError(
            f"--source {args.source}: {args.model} explains images; wav files and tables go "
            "to audio, series and tabular models (exported with --modality, docs/audio.md)"
        )
    else:
        source = open_source(args.source, size, loop=args.loop)
    sinks: list = []
    server = None
    if args.serve:
        from edgesal.runtimes.frameboard import FrameBoard
        from edgesal.runtimes.server import StatusServer

        board = FrameBoard(args.jpeg_quality)
        sinks.append(BoardSink(board))
    if args.record:
        sinks.append(VideoSink(args.record, source.fps))
    if args.records:
        header = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "source": args.source,
            "models": [{**m, "sha256": file_sha256(m["model"])} for m in chain.describe()],
            "labels": list(chain[0].contract.labels),
            "input_size": list(chain[0].contract.preprocess.size),
            "writer": "edgesal runtimes",
        }
        files = (args.records, header, args.records_bits, args.fsync_every)
        if kind:
            header.update(stream_header(pipeline))
            sinks.append(SignalRecordsSink(pipeline, *files))
        else:
            sinks.append(RecordsSink(*files))
    progress = (
        ProgressBar(source.total) if source.total and not (source.live or args.loop) else None
    )
    runner = Runner(
        pipeline, source, sinks, args.realtime, args.max_frames, progress, workers=args.workers
    )
    has_display = args.display != "no" and display_available()
    if args.display == "yes" and not has_display:
        raise DeviceError(
            "--display yes: no display (DISPLAY/WAYLAND_DISPLAY unset) or this "
            "OpenCV build has no GUI (opencv-python-headless); use --serve"
        )
    if has_display:
        sinks.append(WindowSink(lambda: runner.stop("window closed")))
    if args.serve:
        server = StatusServer(args.serve, board, runner.status, web)
    return runner, server


def cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    limit_malloc_arenas()
    try:
        runner, server = build_runner(args)
    except DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if server:
        server.start()
        if server.options.token:
            login = f"log in at {server.url}login with the token in {args.token_file}"
            print(login, file=sys.stderr, flush=True)
        print(f"status page: {server.url}", file=sys.stderr, flush=True)
    try:
        summary = runner.run()
    except DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if server:
            server.close()
    print(summary.text(), file=sys.stderr)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary.__dict__, indent=2))
    return 0


def inspect_summary(path: str) -> dict:
    """Counts and facts of a records file: what ``records inspect`` prints."""
    from edgesal.runtimes.records import RecordReader

    reader = RecordReader(path)
    headers, frames, maps, events, unfaithful, checked = [], 0, 0, [], 0, 0
    methods: dict[str, int] = {}
    kinds: dict[str, int] = {}
    for record in reader:
        if record.kind == "header":
            headers.append(record.meta)
        elif record.kind == "event":
            events.append(record.meta)
        elif record.kind == "frame":
            frames += 1
            maps += "map" in record.meta
            if "map" in record.meta:
                kind = str(record.meta["map"].get("kind", "image"))
                kinds[kind] = kinds.get(kind, 0) + 1
            method = record.meta.get("method") or "(none)"
            methods[method] = methods.get(method, 0) + 1
            check = record.meta.get("selfcheck")
            checked += check is not None
            unfaithful += bool(check) and not check["faithful"]
    return {
        "file": str(path),
        "streams": len(headers),
        "headers": headers,
        "frames": frames,
        "maps": maps,
        "map_kinds": kinds,
        "methods": methods,
        "selfchecks": checked,
        "unfaithful": unfaithful,
        "events": events,
        "truncated_bytes": reader.truncated_bytes,
    }


def cmd_records_inspect(args: argparse.Namespace) -> int:
    from edgesal.runtimes.records import RecordReader

    try:
        info = inspect_summary(args.file)
        frames = (
            [f.meta for f in RecordReader(args.file).frames(decode=False)] if args.frames else []
        )
    except DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**info, "frame_list": frames} if args.frames else info, indent=2))
        return 0
    print(
        f"{info['file']}: salrec, {info['streams']} stream(s), {info['frames']} frames, "
        f"{info['maps']} maps"
    )
    for h in info["headers"]:
        models = ", ".join(
            f"{m['method']} ({Path(m['model']).name}, sha256 {m['sha256'][:12]})"
            for m in h.get("models", [])
        )
        print(
            f"  stream {h.get('created', '?')} source={h.get('source')} v{h['version']}: {models}"
        )
    print(f"  methods: {info['methods']}")
    if set(info["map_kinds"]) - {"image"}:
        print(f"  map kinds: {info['map_kinds']}")
    print(f"  self-checks: {info['selfchecks']} ({info['unfaithful']} unfaithful)")
    print(f"  governor events: {len(info['events'])}")
    for e in info["events"]:
        print(
            f"    frame {e['frame']}: level {e['from_level']}->{e['to_level']} {e['action']} "
            f"({e['reason']})"
        )
    if info["truncated_bytes"]:
        print(
            f"  torn tail: {info['truncated_bytes']} bytes after the last complete record "
            "(an interrupted write; every complete frame above is intact)"
        )
    for f in frames:
        check = f.get("selfcheck")
        flag = "" if check is None else (" faithful" if check["faithful"] else " UNFAITHFUL")
        score = "-" if f.get("score") is None else f"{f['score']:.3f}"
        print(
            f"  #{f['frame']:6d} {f.get('label')!s:20} {score} {f.get('method')} "
            f"map={'yes' if 'map' in f else 'no'}{flag}"
        )
    return 0


def cmd_records_extract(args: argparse.Namespace) -> int:
    import cv2

    from edgesal.runtimes.records import RecordReader

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    try:
        for frame in RecordReader(args.file).frames():
            if frame.saliency is None:
                continue
            name = out / f"frame{frame.meta['frame']:06d}.{args.format}"
            if args.format == "npy":
                np.save(name, frame.saliency)
            else:
                cv2.imwrite(str(name), np.clip(frame.saliency * 65535, 0, 65535).astype(np.uint16))
            count += 1
    except DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{count} maps written to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgesal.runtimes", description=__doc__)
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return args.func(args)
