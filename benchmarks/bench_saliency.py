"""Core benchmark: onnxruntime forward vs in-graph vanilla saliency vs PyTorch autograd.

One run, same machine, fixed threads, interleaved medians; plus peak RSS of a process that loads
the saliency model and runs 100 frames, against a PyTorch process doing the same. The saliency
model is timed in both forms ``edgesal export --for`` writes, each loaded as is in a plain
session: ``generic`` (portable masks) and ``onnxruntime-cpu`` (the default for .onnx: masks as
HardSigmoids the x86 CPU kernels keep blocked, :mod:`edgesal.graph.idioms.forms`), which is
also the form ``edgesal run`` runs.
Usage: python benchmarks/bench_saliency.py [--runs 50] [--threads 2] [--write]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine_info, write_section  # noqa: E402
from edgesal import zoo  # noqa: E402
from edgesal.export import ExportOptions, export_saliency  # noqa: E402
from edgesal.graph.idioms.forms import for_runtime  # noqa: E402
from edgesal.tools.bench import PEAK_RSS_KB, interleaved_medians, peak_rss_mb, session  # noqa: E402

_TORCH_RSS = """
import sys, torch
sys.path.insert(0, sys.argv[3])
from tests.torch_reference import load
torch.set_num_threads(int(sys.argv[2]))
model = load(sys.argv[1], __import__('pathlib').Path(sys.argv[4])).eval()
x = torch.zeros(1, 3, 224, 224)
for _ in range(100):
    x.grad = None
    x.requires_grad_(True)
    out = model(x)
    out[0, out[0].argmax()].backward()
    x.grad.abs().amax(1)
print(PEAK_RSS)
""".replace("PEAK_RSS", PEAK_RSS_KB)


def bench(name: str, threads: int, runs: int, clock=time.perf_counter) -> dict:
    import torch

    from tests.torch_reference import load

    torch.set_num_threads(threads)
    forward = zoo.build(name, progress=False)
    saliency = export_saliency(forward, ExportOptions(method="vanilla"))
    fwd_sess = session(forward, threads)
    sal_sess = session(for_runtime(saliency, "generic"), threads)
    runtime_sess = session(for_runtime(saliency, "onnxruntime-cpu"), threads)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    module = load(name, zoo.weights_path(name, progress=False)).eval()
    xt = torch.from_numpy(x)

    def torch_forward():
        with torch.no_grad():
            module(xt)

    def torch_saliency():
        leaf = xt.clone().requires_grad_(True)
        out = module(leaf)
        out[0, out[0].argmax()].backward()
        return leaf.grad.abs().amax(1)

    medians = interleaved_medians(
        {
            "ort_forward": lambda: fwd_sess.run(None, {"image": x}),
            "ort_vanilla": lambda: sal_sess.run(None, {"image": x}),
            "ort_vanilla_runtime": lambda: runtime_sess.run(None, {"image": x}),
            "torch_forward": torch_forward,
            "torch_vanilla": torch_saliency,
        },
        runs,
        clock=clock,
    )
    rss_ours = peak_rss_mb(for_runtime(saliency, "onnxruntime-cpu"), frames=100, threads=threads)
    rss_torch = (
        int(
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    _TORCH_RSS,
                    name,
                    str(threads),
                    str(Path(__file__).resolve().parent.parent),
                    str(zoo.weights_path(name)),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()[-1]
        )
        / 1024.0
    )
    return {
        "model": name,
        "threads": threads,
        "runs": runs,
        **medians,
        "rss_ours_mb": rss_ours,
        "rss_torch_mb": rss_torch,
    }


def table(results: list[dict]) -> str:
    lines = [
        "| model | ORT forward ms | `--for generic` file ms | generic / forward "
        "| default file (`--for onnxruntime-cpu`), plain session "
        "| torch autograd ms | torch / ours (generic, default) "
        "| peak RSS ours MB | peak RSS torch MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['ort_forward']:.2f} | {r['ort_vanilla']:.2f} | "
            f"{r['ort_vanilla'] / r['ort_forward']:.2f}x | {r['ort_vanilla_runtime']:.2f} ms, "
            f"{r['ort_vanilla_runtime'] / r['ort_forward']:.2f}x | {r['torch_vanilla']:.2f} | "
            f"{r['torch_vanilla'] / r['ort_vanilla']:.1f}x, "
            f"{r['torch_vanilla'] / r['ort_vanilla_runtime']:.1f}x | {r['rss_ours_mb']:.0f} | "
            f"{r['rss_torch_mb']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="efficientnet_lite0,mobilenet_v2")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time CPU seconds of this process (use with --threads 1 on a loaded machine: wall "
        "time there mostly measures the waits for a core)",
    )
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    results = [bench(m, args.threads, args.runs, clock) for m in args.models.split(",")]
    body = (
        f"## Core: vanilla saliency vs forward vs PyTorch (1x3x224x224)\n\n"
        f"Machine: {machine_info()}. {args.threads} threads, "
        f"{'CPU' if args.cpu_time else 'wall'} time; medians of {args.runs} runs taken "
        "in alternating blocks of 5 consecutive runs (benchmarks/common.py says why); "
        f"`python benchmarks/bench_saliency.py --write`.\n\n{table(results)}\n"
    )
    print(body)
    print(json.dumps(results, indent=2))
    if args.write:
        write_section("core", body)


if __name__ == "__main__":
    main()
