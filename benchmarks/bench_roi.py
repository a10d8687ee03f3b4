"""Region-of-interest saliency: full map vs a window's map on onnxruntime, both zoo models.

Centered square windows of 1/16, 1/4 and 1/2 of the image area, fixed at export (``--roi``) and
placed at run time (``--roi-size``); one run, 2 threads, interleaved medians, plus the plain
forward pass for reference; then the same in process CPU time on 1 thread with spinning off,
which a machine shared with other jobs disturbs much less than wall-clock time.
Usage: python benchmarks/bench_roi.py [--runs 50] [--threads 2] [--clocks wall,cpu] [--write]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine_info, write_section  # noqa: E402
from edgesal import metadata, zoo  # noqa: E402
from edgesal.export import ExportOptions, export_saliency  # noqa: E402
from edgesal.tools.bench import interleaved_medians  # noqa: E402

FRACTIONS = {"1/16": 1 / 16, "1/4": 1 / 4, "1/2": 1 / 2}
SIZE = 224


def windows() -> dict[str, tuple[int, int, int, int]]:
    """Centered square boxes x0,y0,x1,y1 of each area fraction."""
    boxes = {}
    for label, fraction in FRACTIONS.items():
        side = round(SIZE * math.sqrt(fraction))
        start = (SIZE - side) // 2
        boxes[label] = (start, start, start + side, start + side)
    return boxes


def bench(name: str, method: str, threads: int, runs: int, clock: str) -> list[dict]:
    forward = zoo.build(name, progress=False)
    x = np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    feeds = {"image": x}
    spin = clock == "wall"
    fns = {"forward": _runner(session(forward, threads, spin), feeds)}
    full = export_saliency(forward, ExportOptions(method=method))
    fns["full"] = _runner(session(full, threads, spin), feeds)
    plans = {}
    for label, box in windows().items():
        size = (box[2] - box[0], box[3] - box[1])
        for kind, options in (("fixed", {"roi": box}), ("runtime", {"roi_size": size})):
            model = export_saliency(forward, ExportOptions(method=method, **options))
            plans[(label, kind)] = metadata.read(model)["roi"]
            extra = {"roi": np.array([box[:2]], np.int64)} if kind == "runtime" else {}
            fns[f"{label} {kind}"] = _runner(session(model, threads, spin), {**feeds, **extra})
    medians = interleaved_medians(fns, runs) if spin else cpu_medians(fns, runs)
    rows = []
    for (label, kind), plan in plans.items():
        ms = medians[f"{label} {kind}"]
        rows.append(
            {
                "model": name,
                "method": method,
                "window": f"{label} ({plan['window'][0]}x{plan['window'][1]})",
                "kind": kind,
                "split": plan["split"] or "-",
                "crop": f"{plan['crop'][0]}x{plan['crop'][1]}",
                "forward_ms": medians["forward"],
                "full_ms": medians["full"],
                "roi_ms": ms,
                "saving": 1 - ms / medians["full"],
                "backward_saving": 1
                - (ms - medians["forward"]) / (medians["full"] - medians["forward"]),
            }
        )
    return rows


def session(model: onnx.ModelProto, threads: int, spin: bool) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def cpu_medians(fns: dict, runs: int, warmup: int = 5) -> dict[str, float]:
    """Median process CPU ms of each callable, run round-robin."""
    return interleaved_medians(fns, runs, warmup, clock=time.process_time)


def _runner(sess, feeds):
    return lambda: sess.run(None, feeds)


def table(rows: list[dict]) -> str:
    lines = [
        "| model | method | window | kind | split tensor | crop | forward ms | full map ms | "
        "window map ms | saved | saved of (map - forward) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['method']} | {r['window']} | {r['kind']} | `{r['split']}` | "
            f"{r['crop']} | {r['forward_ms']:.2f} | {r['full_ms']:.2f} | {r['roi_ms']:.2f} | "
            f"{r['saving']:.0%} | {r['backward_saving']:.0%} |"
        )
    return "\n".join(lines)


CLOCKS = {"wall": "wall-clock", "cpu": "process CPU time, 1 thread, spinning off"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (wall clock)")
    parser.add_argument("--methods", default="vanilla", help="comma-separated methods")
    parser.add_argument("--models", default="mobilenet_v2,efficientnet_lite0")
    parser.add_argument("--clocks", default="wall,cpu", help="wall and/or cpu (comma-separated)")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    body = [
        "## Region-of-interest saliency (`benchmarks/bench_roi.py`)",
        "",
        f"{machine_info()}; onnxruntime CPU, median of {args.runs} interleaved runs, 224x224, "
        "centered square windows. *fixed*: `--roi x0,y0,x1,y1`; *runtime*: `--roi-size W,H` "
        "with the window placed by the `roi` input (its crop is the worst case over all "
        "positions). The forward pass is part of every saliency model (the prediction); the "
        "last column is the saving on the rest.",
    ]
    for clock in args.clocks.split(","):
        threads = args.threads if clock == "wall" else 1
        rows = [
            row
            for name in args.models.split(",")
            for method in args.methods.split(",")
            for row in bench(name, method, threads, args.runs, clock)
        ]
        label = CLOCKS[clock] + (f", {threads} threads" if clock == "wall" else "")
        body += ["", f"### {label}", "", table(rows)]
        print("\n".join(body[-4:]), flush=True)
    if args.write:
        write_section("roi", "\n".join(body))


if __name__ == "__main__":
    main()
