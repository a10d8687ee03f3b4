"""Evaluation benchmark: deletion + insertion throughput, edgesal's local engine vs Quantus.

Both compute, on EfficientNet-Lite0 and the zoo's photos, a deletion curve (pixels to zero) and an
insertion curve (pixels into the blurred canvas), 21 forward passes each, for the same maps:
edgesal with ``edgesal.eval`` on onnxruntime (process pool, one session per worker; its time also
includes computing the maps, starting the workers and writing the report), Quantus 0.6 with
``PixelFlipping`` on the PyTorch twin of the network (21 steps of 7,168 values, as its step must
divide 224*224, where edgesal takes 20 steps plus the unperturbed
point: 21 forward passes either way).
One run, same machine, same number of cores for both. Prints images/s; ``--write`` updates the
``eval`` section of BENCHMARKS.md.
Usage: python benchmarks/bench_eval.py [--images 12] [--workers 2] [--write]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine_info, write_section  # noqa: E402
from edgesal import zoo  # noqa: E402
from edgesal.eval import perturb  # noqa: E402
from edgesal.eval.audit import evaluate  # noqa: E402
from edgesal.eval.engines import LocalEngine  # noqa: E402
from edgesal.eval.model import Runner, inspect, pixels_of  # noqa: E402
from edgesal.eval.options import EvalOptions  # noqa: E402
from edgesal.export import ExportOptions, export_saliency  # noqa: E402
from edgesal.runtimes.contract import rgb_crop  # noqa: E402

NAME, STEPS = "efficientnet_lite0", 20


def photos(count: int) -> dict[str, np.ndarray]:
    """The zoo photos, mirrored copies after the first round, ``count`` in all."""
    base = list(zoo.photos().items())
    return {
        f"{i:02d}_{name}.png": rgb if i < len(base) else np.ascontiguousarray(rgb[:, ::-1])
        for i, (name, rgb) in ((i, base[i % len(base)]) for i in range(count))
    }


class Clock:
    """Wall seconds and CPU seconds (this process and its finished children, user + system):
    CPU time is what the other processes on a shared machine cannot inflate."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), self._cpu()

    @staticmethod
    def _cpu() -> float:
        me, children = (
            resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, self._cpu() - self.cpu


def run_edgesal(model, images: dict, workers: int) -> tuple[tuple[float, float], dict]:
    options = EvalOptions(
        steps=STEPS,
        road_fractions=(),
        sensitivity_samples=0,
        controls=(),
        sanity_images=0,
        overlays=0,
    )
    with tempfile.TemporaryDirectory() as out:
        clock = Clock()
        report = evaluate(model, images, out, options, engine=LocalEngine(workers), resume=False)
        return clock.stop(), report


def maps_and_targets(model, images: dict) -> tuple:
    """Inputs [N,3,H,W], vanilla maps [N,1,H,W], explained classes and their probabilities, as
    edgesal computes them (outside any timing)."""
    runner = Runner(model, inspect(model))
    pixels, maps, targets, probs = [], [], [], []
    for rgb in images.values():
        p = pixels_of(rgb_crop(rgb, runner.spec.preprocess), runner.spec.preprocess)
        ex = runner.explain(p)
        pixels.append(p)
        maps.append(ex.maps["vanilla"])
        targets.append(ex.target)
        probs.append(float(ex.probs[ex.target]))
    x = np.stack(pixels).transpose(0, 3, 1, 2).astype(np.float32)
    return x, np.stack(maps)[:, None], np.array(targets), pixels, probs


def run_quantus(model, images: dict, threads: int) -> tuple[tuple[float, float], dict]:
    """Quantus PixelFlipping deletion and insertion on the torch twin; (seconds, mean AUCs)."""
    import quantus
    import torch

    from tests.torch_reference import load

    torch.set_num_threads(threads)
    net = load(NAME, zoo.weights_path(NAME, progress=False)).eval()
    x, maps, targets, pixels, probs = maps_and_targets(model, images)
    canvas = np.stack([perturb.baseline(p, "blur") for p in pixels]).transpose(0, 3, 1, 2)
    canvas = np.ascontiguousarray(canvas, np.float32)
    original = x.reshape(len(x), -1)

    def write_back(arr, indices, **kwargs):
        out = arr.copy()
        rows = np.arange(len(arr))[:, None]
        out[rows, indices] = original[rows, indices]
        return out

    def flipping(perturb_func=None):
        return quantus.PixelFlipping(
            features_in_step=3 * x.shape[2] * x.shape[3] // (STEPS + 1),
            perturb_baseline=0.0,
            perturb_func=perturb_func,
            normalise=False,
            abs=False,
            disable_warnings=True,
        )

    common = {"y_batch": targets, "a_batch": maps, "softmax": True, "device": "cpu"}
    clock = Clock()
    deletion = flipping()(model=net, x_batch=x, batch_size=len(x), **common)
    insertion = flipping(write_back)(model=net, x_batch=canvas, batch_size=len(x), **common)
    seconds = clock.stop()
    with torch.no_grad():
        start_ins = torch.softmax(net(torch.from_numpy(canvas)), 1).numpy()
    auc = {
        "deletion": np.mean([perturb.auc([p, *c]) for p, c in zip(probs, deletion, strict=True)]),
        "insertion": np.mean(
            [
                perturb.auc([start_ins[i, t], *c])
                for i, (t, c) in enumerate(zip(targets, insertion, strict=True))
            ]
        ),
    }
    return seconds, auc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2, help="edgesal workers = torch threads")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    model = export_saliency(zoo.build(NAME, progress=False), ExportOptions(method="vanilla"))
    images = photos(args.images)
    (mine_s, mine_cpu), report = run_edgesal(model, images, args.workers)
    (theirs_s, theirs_cpu), auc = run_quantus(model, images, args.workers)
    mine = report["summary"]["methods"]["vanilla"]
    n = len(images)
    rows = [
        "| engine | images | wall s | images/s | CPU s | images per CPU s | deletion AUC | "
        "insertion AUC |",
        "|---|---|---|---|---|---|---|---|",
        f"| edgesal eval, local engine ({args.workers} workers x 1 thread, onnxruntime) | {n} | "
        f"{mine_s:.1f} | {n / mine_s:.2f} | {mine_cpu:.1f} | {n / mine_cpu:.3f} | "
        f"{mine['deletion_auc']['mean']:.3f} | {mine['insertion_auc']['mean']:.3f} |",
        f"| Quantus 0.6 PixelFlipping x2, PyTorch ({args.workers} threads) | {n} | "
        f"{theirs_s:.1f} | {n / theirs_s:.2f} | {theirs_cpu:.1f} | {n / theirs_cpu:.3f} | "
        f"{auc['deletion']:.3f} | {auc['insertion']:.3f} |",
    ]
    body = "\n".join(
        [
            "## Evaluation: deletion + insertion throughput (`benchmarks/bench_eval.py`)",
            "",
            f"EfficientNet-Lite0, {n} photos (zoo photos and their mirror images), vanilla maps, "
            f"deletion (zeros) and insertion (blurred canvas) with 21 forward passes per curve. "
            "edgesal's time includes computing the maps, starting the worker processes and writing "
            "the report; Quantus gets the maps precomputed. One run.",
            "",
            *rows,
            "",
            f"edgesal / Quantus throughput: **{theirs_s / mine_s:.1f}x** in wall time, "
            f"**{theirs_cpu / mine_cpu:.1f}x** in CPU time (target >= 5x). The machine is shared "
            "with other jobs: wall time depends on their load, CPU time much less.",
            "",
            f"Machine: {machine_info()}.",
        ]
    )
    print(body)
    if args.write:
        write_section("eval", body)


if __name__ == "__main__":
    main()
