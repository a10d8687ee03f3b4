#!/usr/bin/env python3
"""Field diagnostic box: headless camera -> saliency records with storage rotation + web view.

A box left in the field records every frame's prediction, map and self-check to ``.salrec``
files that rotate at ``--file-size`` and are deleted oldest first to keep the folder under
``--keep``; an auditor reads them later without the model (``edgesal records inspect``), or
watches live on the status page.

Real device:  python3 field_box.py model.sal.onnx --source 0 --out /data/records \
                  --token-file /data/web.token
Simulation:   python3 field_box.py model.sal.onnx --simulate clip.mp4 --seconds 10 --out /tmp/r
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from edgesal.runtimes.errors import OutputError
from edgesal.runtimes.frameboard import FrameBoard
from edgesal.runtimes.governor import Budget
from edgesal.runtimes.pipeline import Pipeline, PipelineConfig
from edgesal.runtimes.records import RecordWriter
from edgesal.runtimes.runner import Runner
from edgesal.runtimes.selfcheck import CheckConfig
from edgesal.runtimes.server import StatusServer
from edgesal.runtimes.simulation import ThermalSimulator, stop_after
from edgesal.runtimes.sinks import BoardSink, RecordsSink, file_sha256
from edgesal.runtimes.sources import open_source
from edgesal.runtimes.webauth import web_options

log = logging.getLogger("field_box")


class RotatingRecords(RecordsSink):
    """Records split into files of at most ``file_size`` bytes; the oldest files are deleted
    while the folder holds more than ``keep`` bytes."""

    def __init__(self, folder: Path, header: dict, file_size: int, keep: int):
        self.folder, self.header, self.file_size, self.keep = folder, header, file_size, keep
        folder.mkdir(parents=True, exist_ok=True)
        self.rotations = 0
        self._open_new()

    def _open_new(self) -> None:
        name = time.strftime("field-%Y%m%d-%H%M%S") + f"-{self.rotations:04d}.salrec"
        self.path = self.folder / name
        self.writer = RecordWriter(self.path, self.header, bits=8, fsync_every=50)
        self._last_decision = float("-inf")

    def write(self, result) -> None:
        # Rotate before writing, not after, so that no file is left holding only a header
        # when the box stops right after a rotation.
        if self.path.stat().st_size >= self.file_size:
            self.writer.close()
            self.rotations += 1
            self._open_new()
            self._prune()
        super().write(result)

    def _prune(self) -> None:
        files = sorted(self.folder.glob("field-*.salrec"))
        total = sum(f.stat().st_size for f in files)
        for old in files[:-1]:
            if total <= self.keep:
                break
            total -= old.stat().st_size
            old.unlink()
            log.info("storage rotation: deleted %s", old.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="saliency model (.onnx or .tflite)")
    parser.add_argument("--source", default="0", help="camera or stream")
    parser.add_argument("--out", default="/data/records", help="records folder")
    parser.add_argument("--file-size", type=int, default=64 << 20, help="bytes per records file")
    parser.add_argument("--keep", type=int, default=4 << 30, help="bytes of records to keep")
    parser.add_argument("--serve", default="0.0.0.0:8080", help="status page address")
    parser.add_argument(
        "--token-file", help="web view token, needed when --serve is not loopback (made if missing)"
    )
    parser.add_argument("--selfcheck-every", type=int, default=10, help="self-check every N maps")
    parser.add_argument("--simulate", metavar="VIDEO", help="replay VIDEO as the camera, fake heat")
    parser.add_argument("--seconds", type=float, help="stop after this long")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with ThermalSimulator() if args.simulate else _NoSimulation() as thermal:
        config = PipelineConfig(
            budget=Budget(temp_limit=70.0, dwell=0.25 if args.simulate else 2.0),
            selfcheck=CheckConfig(every=args.selfcheck_every),
            thermal_dir=str(thermal),
        )
        pipeline = Pipeline([args.model], config)
        source = open_source(args.simulate or args.source, loop=bool(args.simulate))
        board = FrameBoard()
        # The model's sha256 lets `edgesal eval --records` check the files came from this model.
        models = [{**m, "sha256": file_sha256(m["model"])} for m in pipeline.chain.describe()]
        header = {"source": args.source, "models": models, "box": "field"}
        records = RotatingRecords(Path(args.out), header, args.file_size, args.keep)
        runner = Runner(pipeline, source, [records, BoardSink(board)], realtime=bool(args.simulate))
        try:
            web = web_options(args.token_file, None, None)
            server = StatusServer(args.serve, board, runner.status, web).start()
        except OutputError as exc:  # no token beyond loopback, port in use: one line, exit 2
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"status page: {server.url}", file=sys.stderr, flush=True)
        stop_after(args.seconds)
        try:
            summary = runner.run()
        finally:
            server.close()
    print(summary.text(), file=sys.stderr)
    print(f"records: {records.rotations} rotations, folder {args.out}", file=sys.stderr)
    return 0


class _NoSimulation:
    def __enter__(self) -> str:
        return "/sys/class/thermal"

    def __exit__(self, *exc) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main())
