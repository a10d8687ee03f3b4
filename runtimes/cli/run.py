"""``edgesal run``: the pipeline, source, sinks and web view a command line asks for, run."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from edgesal.runtimes.backends.base import BackendOptions
from edgesal.runtimes.contract import read_labels
from edgesal.runtimes.errors import DeviceError
from edgesal.runtimes.governor import Budget
from edgesal.runtimes.heap import limit_malloc_arenas
from edgesal.runtimes.overlay import OverlayStyle
from edgesal.runtimes.pipeline import PipelineConfig
from edgesal.runtimes.selfcheck import CheckConfig
from edgesal.runtimes.webauth import check_exposure, web_options


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
    """``edgesal run``: build the runner, serve the web view if asked, run to the end; 2 on bad
    input (model, source, flag, port in use)."""
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
